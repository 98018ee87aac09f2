// Browser test: the dev app of plugins/dora (legacy frontend system, @backstage/dev-utils)
// in headless Chromium against the dev backend of plugins/dora-backend, which reads the
// warehouse the real pipeline filled. Starts both servers, checks the entity card, the
// team card (with a suppressed survey row), the survey banner and the survey flow and the
// improvement candidates; fails on any browser console error; writes screenshots to
// $DORA_SCREENSHOT_DIR (docs/img to refresh the docs' images; default a temporary
// folder, so a test run leaves the checkout unchanged) as backstage-*.png. Prints one line per check and writes the counts to
// $E2E_RESULT (JSON) for run-tests.sh.
import { spawn } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { chromium } from 'playwright-core';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const docsImg = process.env.DORA_SCREENSHOT_DIR
  ? resolve(process.env.DORA_SCREENSHOT_DIR)
  : join(tmpdir(), 'dora-backstage-screenshots');
mkdirSync(docsImg, { recursive: true });
const APP = 'http://localhost:3017';
const BACKEND = 'http://localhost:7017';
const adminUrl = required('DORA_TEST_ADMIN_URL');
const readerUrl = required('DORA_TEST_READER_URL');
const surveyId = `portal-dev-${Date.now()}`;
const user = 'user:default/atlas-dev7';

function required(name) {
  if (!process.env[name]) {
    console.error(`browser test: ${name} is not set (run backstage/run-tests.sh)`);
    process.exit(2);
  }
  return process.env[name];
}

const results = { passed: 0, failed: 0 };
async function check(name, body) {
  try {
    await body();
    results.passed += 1;
    console.log(`  ✓ ${name}`);
  } catch (error) {
    results.failed += 1;
    console.log(`  ✕ ${name}\n      ${String(error?.stack ?? error).split('\n').slice(0, 4).join('\n      ')}`);
  }
}

const children = [];
function start(name, args, cwd, env) {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  child.stdout.on('data', d => (log = (log + d).slice(-20000)));
  child.stderr.on('data', d => (log = (log + d).slice(-20000)));
  children.push({ name, child, log: () => log });
  return child;
}
function stopAll() {
  for (const { child } of children) {
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
}
async function waitFor(url, what, seconds) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise(r => setTimeout(r, 1000));
  }
  for (const c of children) console.log(`--- ${c.name} log ---\n${c.log().slice(-3000)}`);
  throw new Error(`${what} did not answer at ${url} within ${seconds}s`);
}

/**
 * Console errors that are not the plugin's: the guest sign-in probing the auth backend the
 * dev backend does not have (a 404), and React's deprecation warning for findDOMNode, which
 * Material UI v4 (Backstage's core components) calls in development builds.
 */
function expectedNoise(msg) {
  const where = msg.location()?.url ?? '';
  if (where.includes('/api/auth/guest/refresh')) return true;
  return msg.text().startsWith('Warning: findDOMNode is deprecated');
}

async function published(sql, params = []) {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows;
  } finally {
    await client.end();
  }
}

const env = {
  DORA_DEV_READER_URL: readerUrl,
  DORA_DEV_SURVEY_URL: adminUrl,
  DORA_DEV_SURVEY_ID: surveyId,
  DORA_DEV_USER: user,
  DORA_DEV_GROUPS: 'group:default/atlas',
};
// A server left over from an earlier run would be tested instead of this checkout's code.
for (const url of [APP, BACKEND]) {
  const answered = await fetch(url).then(() => true, () => false);
  if (answered) {
    console.error(`browser test: something already listens at ${url}; stop it first`);
    process.exit(2);
  }
}
const cli = join(root, 'node_modules', '@backstage', 'cli', 'bin', 'backstage-cli');
start(
  'backend',
  ['--require', '@backstage/cli/config/nodeTransform.cjs', 'plugins/dora-backend/dev/index.ts', '--config', 'app-config.yaml'],
  root,
  env,
);
start('app', [cli, 'package', 'start', '--config', '../../app-config.yaml'], join(root, 'plugins', 'dora'), env);
process.on('exit', stopAll);
// The servers run in their own process groups: stop them when this test is interrupted too.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopAll();
    process.exit(130);
  });
}

let browser;
try {
  await waitFor(`${BACKEND}/api/dora/health`, 'the dev backend', 120);
  await waitFor(APP, 'the dev app', 300);
  mkdirSync(docsImg, { recursive: true });

  const [component] = await published(
    `select entity_ref from dora_metrics.service_metrics
     where window_days = 30 and deployment_frequency_tier is not null
     order by deployments desc, entity_ref limit 1`,
  );
  const [team] = await published(
    `select group_ref from dora_metrics.team_space_survey
     where group_ref not in (select distinct parent_ref from dora_metrics.team_space_survey where parent_ref is not null)
     group by group_ref having bool_or(suppressed) and bool_or(not suppressed)
     order by group_ref limit 1`,
  );
  const [withCandidates] = await published(
    `select entity_ref from dora_metrics.improvement_candidates
     where entity_ref like 'component:%' order by severity = 'high' desc, entity_ref limit 1`,
  );

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // The dev app's sign-in page offers "guest"; the dev backend has no auth backend, so
  // the app takes the legacy guest identity (no token) and the dev backend's httpAuth
  // signs every request in as DORA_DEV_USER.
  await page.addInitScript(() => {
    localStorage.setItem('@backstage/core:SignInPage:provider', 'guest');
    localStorage.setItem('enableLegacyGuestToken', 'true');
  });
  const consoleErrors = [];
  page.on('console', msg => {
    if (msg.type() !== 'error' || expectedNoise(msg)) return;
    consoleErrors.push(`${page.url()}: ${msg.text()}`);
  });
  page.on('pageerror', error => consoleErrors.push(`${page.url()}: ${error.message}`));
  page.setDefaultTimeout(60000);

  await check(`entity card shows ${component.entity_ref} with tiers and the reminder`, async () => {
    await page.goto(`${APP}/component?name=${component.entity_ref.split('/')[1]}`);
    await page.getByText('Deployment frequency').waitFor();
    const [row] = await published(
      'select deployments, deployment_frequency_tier from dora_metrics.service_metrics where entity_ref = $1 and window_days = 30',
      [component.entity_ref],
    );
    const text = await page.locator('[data-testid="dora-deployment_frequency"]').innerText();
    if (!text.includes(`${row.deployments} deployments`) || !text.includes(row.deployment_frequency_tier)) {
      throw new Error(`deployment frequency line '${text}' does not show ${row.deployments} deployments, ${row.deployment_frequency_tier}`);
    }
    // The DORA 2023/2024 lines: shown exactly when the pipeline publishes their columns.
    const columns = await published(
      `select column_name from information_schema.columns
       where table_schema = 'dora_metrics' and table_name = 'service_metrics'
         and column_name in ('median_failed_deployment_recovery_minutes', 'rework_rate_pct')`,
    );
    const published2024 = new Set(columns.map(c => c.column_name));
    for (const [column, testId] of [
      ['median_failed_deployment_recovery_minutes', 'dora-failed_deployment_recovery'],
      ['rework_rate_pct', 'dora-rework_rate'],
    ]) {
      const shown = (await page.getByTestId(testId).count()) > 0;
      if (shown !== published2024.has(column)) {
        throw new Error(`${testId} ${shown ? 'shown' : 'missing'} while ${column} is ${published2024.has(column) ? '' : 'not '}published`);
      }
    }
    await page.getByText('For finding systemic problems, not for grading people.').first().waitFor();
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(docsImg, 'backstage-entity-card.png'), fullPage: true });
  });

  await check(`team card shows ${team.group_ref} with a suppressed survey row`, async () => {
    await page.goto(`${APP}/team?name=${team.group_ref.split('/')[1]}`);
    await page.getByText('SPACE survey').waitFor();
    await page.locator('[data-testid="suppressed"]').first().waitFor();
    const [row] = await published(
      `select survey_id, respondents from dora_metrics.team_space_survey
       where group_ref = $1 and suppressed order by period_start desc limit 1`,
      [team.group_ref],
    );
    const text = await page.locator(`[data-testid="survey-${row.survey_id}"]`).innerText();
    if (!/Not shown/.test(text) || !text.includes(`${row.respondents} of`)) {
      throw new Error(`suppressed survey row reads '${text}'`);
    }
    await page.waitForTimeout(500);
    // The dev app scrolls inside its layout, so a full-page shot stops at the viewport:
    // a taller viewport shows the whole card down to the suppressed rows.
    await page.setViewportSize({ width: 1280, height: 1250 });
    await page.screenshot({ path: join(docsImg, 'backstage-team-card.png') });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await check('improvement candidates page lists the published findings', async () => {
    await page.goto(`${APP}/dora/candidates?entity=${encodeURIComponent(withCandidates.entity_ref)}`);
    const rules = await published('select rule from dora_metrics.improvement_candidates where entity_ref = $1', [withCandidates.entity_ref]);
    for (const { rule } of rules) await page.locator(`[data-testid="candidate-${rule}"]`).waitFor();
    await page.screenshot({ path: join(docsImg, 'backstage-candidates.png'), fullPage: true });
  });

  await check('survey banner shows the pending survey, the form submits, the banner goes', async () => {
    await page.goto(`${APP}/home`);
    await page.getByText('Team pulse (dev)').waitFor();
    await page.screenshot({ path: join(docsImg, 'backstage-survey-banner.png') });
    await page.getByText('Answer the survey').click();
    await page.getByLabel('satisfaction 4').check();
    await page.getByLabel('flow 3').check();
    await page.getByLabel(/What slowed you down/).fill('Waiting for a staging environment');
    await page.screenshot({ path: join(docsImg, 'backstage-survey-page.png'), fullPage: true });
    await page.getByRole('button', { name: 'Submit' }).click();
    await page.getByTestId('survey-thanks').waitFor();
    const stored = await published(
      'select user_ref, group_ref, satisfaction, flow_state from dora.survey_responses where survey_id = $1',
      [surveyId],
    );
    const expected = [{ user_ref: user, group_ref: 'group:default/atlas', satisfaction: 4, flow_state: 3 }];
    if (JSON.stringify(stored) !== JSON.stringify(expected)) {
      throw new Error(`stored ${JSON.stringify(stored)}, expected ${JSON.stringify(expected)}`);
    }
    await page.goto(`${APP}/home`);
    await page.getByText('Welcome back').waitFor();
    await page.waitForTimeout(2000);
    if (await page.getByText('Team pulse (dev)').count()) throw new Error('the banner still shows after answering');
  });

  await check('no console errors in the browser', async () => {
    if (consoleErrors.length) throw new Error(consoleErrors.join('\n'));
  });
} catch (error) {
  results.failed += 1;
  console.log(`  ✕ browser test setup: ${error.message}`);
} finally {
  await browser?.close();
  stopAll();
}
console.log(`browser: ${results.passed} passed, ${results.failed} failed`);
if (process.env.E2E_RESULT) writeFileSync(process.env.E2E_RESULT, JSON.stringify(results));
process.exit(results.failed ? 1 : 0);
