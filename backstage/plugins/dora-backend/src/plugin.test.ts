import {
  mockCredentials,
  mockServices,
  startTestBackend,
} from '@backstage/backend-test-utils';
import { JsonObject } from '@backstage/types';
import request from 'supertest';
import { doraPlugin } from './plugin';
import { asJson, query, testEnv, userInfoFactory } from './testEnv';

const env = testEnv();

async function startDora(config: JsonObject) {
  const { server } = await startTestBackend({
    features: [
      doraPlugin,
      mockServices.rootConfig.factory({ data: { dora: config } }),
      userInfoFactory({}),
    ],
  });
  return server;
}

describe('dora backend: metrics routes against the published dora_metrics', () => {
  let server: Awaited<ReturnType<typeof startDora>>;

  beforeAll(async () => {
    // The reader login: granted DORA_READER_ROLE, nothing else of the warehouse.
    server = await startDora({ database: { connection: env.readerUrl } });
  });

  it('answers a component with its three windows equal to service_metrics', async () => {
    const [busiest] = await query(
      env.adminUrl,
      `select entity_ref from dora_metrics.service_metrics
       where window_days = 30 order by deployments desc, entity_ref limit 1`,
    );
    const ref: string = busiest.entity_ref;
    const name = ref.split('/')[1];
    const response = await request(server).get(`/api/dora/components/default/${name}`);
    expect(response.status).toBe(200);

    const published = await query(
      env.adminUrl,
      'select * from dora_metrics.service_metrics where entity_ref = $1 order by window_days',
      [ref],
    );
    expect(response.body.entityRef).toBe(ref);
    expect(response.body.windows.map((w: any) => w.window_days)).toEqual([7, 30, 90]);
    expect(response.body.windows).toEqual(published.map(asJson));
    const thirty = response.body.windows[1];
    expect(thirty.deployments).toBeGreaterThan(0);
    expect(['elite', 'high', 'medium', 'low']).toContain(thirty.deployment_frequency_tier);
    expect(typeof thirty.lead_time_coverage_pct).toBe('number');
  });

  it('answers the last 26 weeks of service_metrics_weekly, oldest first', async () => {
    const [row] = await query(
      env.adminUrl,
      `select entity_ref from dora_metrics.service_metrics_weekly
       group by entity_ref order by sum(deployments) desc, entity_ref limit 1`,
    );
    const ref: string = row.entity_ref;
    const weekly = await query(
      env.adminUrl,
      `select * from dora_metrics.service_metrics_weekly where entity_ref = $1
       order by week_start desc limit 26`,
      [ref],
    );
    const response = await request(server).get(`/api/dora/components/default/${ref.split('/')[1]}`);
    expect(response.status).toBe(200);
    expect(response.body.weekly).toEqual(weekly.reverse().map(asJson));
    expect(response.body.weekly.length).toBeGreaterThan(4);
  });

  it('answers a group: pooled team_metrics, survey rows with suppression kept, PR activity', async () => {
    const ref = 'group:default/department-1';
    const response = await request(server).get('/api/dora/groups/default/department-1');
    expect(response.status).toBe(200);
    const windows = await query(
      env.adminUrl,
      'select * from dora_metrics.team_metrics where group_ref = $1 order by window_days',
      [ref],
    );
    expect(response.body.windows).toEqual(windows.map(asJson));
    const surveys = await query(
      env.adminUrl,
      `select * from dora_metrics.team_space_survey where group_ref = $1
       order by period_start desc, survey_id limit 6`,
      [ref],
    );
    expect(response.body.surveys).toEqual(surveys.map(asJson));
    for (const row of response.body.surveys.filter((s: any) => s.suppressed)) {
      expect(row.satisfaction_mean).toBeNull();
      expect(row.flow_state_mean).toBeNull();
      expect(typeof row.respondents).toBe('number');
    }
    const activity = await query(
      env.adminUrl,
      `select * from dora_metrics.team_space_activity_weekly where group_ref = $1
       order by week_start desc limit 26`,
      [ref],
    );
    expect(response.body.activity).toEqual(activity.reverse().map(asJson));
  });

  it('shows a small team’s survey as suppressed, never filled in', async () => {
    const response = await request(server).get('/api/dora/groups/default/borealis');
    expect(response.status).toBe(200);
    const suppressed = response.body.surveys.filter((s: any) => s.suppressed);
    expect(suppressed.length).toBeGreaterThan(0);
    for (const row of suppressed) {
      expect(row.suppression_reason).toBe('fewer_than_k');
      expect(row.satisfaction_mean).toBeNull();
      expect(row.satisfaction_3).toBeNull();
      expect(row.eligible_members).toBe(3);
    }
  });

  it('lists the improvement candidates of a component and of a group with its sub-teams', async () => {
    const [candidate] = await query(
      env.adminUrl,
      `select entity_ref from dora_metrics.improvement_candidates
       where entity_ref like 'component:%' order by entity_ref limit 1`,
    );
    const ref: string = candidate.entity_ref;
    const byComponent = await request(server).get(
      `/api/dora/candidates/component/default/${ref.split('/')[1]}`,
    );
    expect(byComponent.status).toBe(200);
    const expected = await query(
      env.adminUrl,
      'select rule from dora_metrics.improvement_candidates where entity_ref = $1 order by rule',
      [ref],
    );
    expect(byComponent.body.candidates.map((c: any) => c.rule).sort()).toEqual(
      expected.map(r => r.rule),
    );
    expect(byComponent.body.candidates[0].finding).toEqual(expect.any(String));

    // The organisation's root sees every candidate of its tree.
    const all = await query(env.adminUrl, 'select count(*)::int as n from dora_metrics.improvement_candidates where group_ref is not null');
    const byRoot = await request(server).get('/api/dora/candidates/group/default/engineering');
    expect(byRoot.status).toBe(200);
    expect(byRoot.body.candidates).toHaveLength(all[0].n);
  });

  it('answers 404 with a clear message for an unknown component and group', async () => {
    const component = await request(server).get('/api/dora/components/default/no-such-service');
    expect(component.status).toBe(404);
    expect(component.body.error.name).toBe('NotFoundError');
    expect(component.body.error.message).toContain('component:default/no-such-service');
    const group = await request(server).get('/api/dora/groups/default/no-such-team');
    expect(group.status).toBe(404);
  });

  it('answers 400 for a malformed ref or kind', async () => {
    const kind = await request(server).get('/api/dora/candidates/user/default/jane');
    expect(kind.status).toBe(400);
    expect(kind.body.error.name).toBe('InputError');
    const name = await request(server).get('/api/dora/components/default/%20drop');
    expect(name.status).toBe(400);
  });

  it('lower-cases refs as the pipeline publishes them', async () => {
    const [row] = await query(env.adminUrl, "select entity_ref from dora_metrics.service_metrics limit 1");
    const response = await request(server).get(
      `/api/dora/components/DEFAULT/${row.entity_ref.split('/')[1].toUpperCase()}`,
    );
    expect(response.status).toBe(200);
    expect(response.body.entityRef).toBe(row.entity_ref);
  });

  it('refuses an unauthenticated request', async () => {
    const response = await request(server)
      .get('/api/dora/groups/default/atlas')
      .set('Authorization', mockCredentials.none.header());
    expect(response.status).toBe(401);
  });
});

describe('dora backend: a warehouse that is down', () => {
  it('answers 503 and keeps serving', async () => {
    const server = await startDora({
      database: { connection: 'postgresql://nobody:secret-pw@127.0.0.1:1/nowhere' },
    });
    const response = await request(server).get('/api/dora/components/default/anything');
    expect(response.status).toBe(503);
    expect(response.body.error.name).toBe('ServiceUnavailableError');
    expect(JSON.stringify(response.body)).not.toContain('secret-pw');
    const again = await request(server).get('/api/dora/groups/default/atlas');
    expect(again.status).toBe(503);
    expect((await request(server).get('/api/dora/health')).status).toBe(200);
  });

  it('answers 503 when the reader may not read the schema', async () => {
    const server = await startDora({
      database: { connection: env.readerUrl, schema: 'dora_raw' },
    });
    const response = await request(server).get('/api/dora/components/default/anything');
    expect(response.status).toBe(503);
    expect(response.body.error.message).toMatch(/permission denied|not published/);
  });
});
