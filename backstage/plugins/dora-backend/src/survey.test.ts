import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  mockCredentials,
  mockServices,
  startTestBackend,
} from '@backstage/backend-test-utils';
import request from 'supertest';
import { doraPlugin } from './plugin';
import { query, testEnv, userInfoFactory } from './testEnv';

const env = testEnv();
const run = promisify(execFile);
const SURVEY = `portal-e2e-${Date.now()}`;
const TABLE = 'dora.survey_responses';
const today = new Date().toISOString().slice(0, 10);
const day = (offset: number) =>
  new Date(Date.now() + offset * 86400000).toISOString().slice(0, 10);

// The synthetic organisation: atlas has 7 members, borealis 3 (below k = 5).
const atlas = [1, 2, 3, 4, 5, 6].map(n => `user:default/atlas-dev${n}`);
const borealis = ['user:default/borealis-dev1'];
const memberships: Record<string, string[]> = {
  ...Object.fromEntries(atlas.map(u => [u, ['group:default/atlas']])),
  'user:default/borealis-dev1': ['group:default/borealis'],
  'user:default/lonely': [],
  'user:default/two-teams': ['group:default/atlas', 'group:default/comet'],
};
const as = (user: string) => mockCredentials.user.header(user);

describe('dora backend: the in-portal survey', () => {
  let server: Awaited<ReturnType<typeof startTestBackend>>['server'];

  beforeAll(async () => {
    await query(env.adminUrl, `drop table if exists ${TABLE}`);
    ({ server } = await startTestBackend({
      features: [
        doraPlugin,
        mockServices.rootConfig.factory({
          data: {
            dora: {
              database: { connection: env.readerUrl },
              survey: { database: { connection: env.adminUrl }, table: TABLE },
              surveys: [
                { id: SURVEY, title: 'Portal pulse', opens: day(-1), closes: day(1) },
                { id: 'closed-one', title: 'Old pulse', opens: day(-30), closes: day(-10) },
                { id: 'future-one', title: 'Next pulse', opens: day(10), closes: day(20) },
              ],
            },
          },
        }),
        userInfoFactory(memberships),
      ],
    }));
  });

  it('creates the survey table the pipeline reads', async () => {
    const columns = await query(
      env.adminUrl,
      `select column_name from information_schema.columns
       where table_schema = 'dora' and table_name = 'survey_responses' order by ordinal_position`,
    );
    expect(columns.map(c => c.column_name)).toEqual([
      'id', 'user_ref', 'group_ref', 'survey_id', 'submitted_at', 'satisfaction', 'flow_state', 'blockers_text',
    ]);
  });

  it('lists only open surveys the signed-in user has not answered', async () => {
    const before = await request(server).get('/api/dora/surveys/pending').set('Authorization', as(atlas[0]));
    expect(before.status).toBe(200);
    expect(before.body).toEqual({
      groups: ['group:default/atlas'],
      surveys: [expect.objectContaining({ id: SURVEY, title: 'Portal pulse' })],
    });
    const posted = await request(server)
      .post(`/api/dora/surveys/${SURVEY}/responses`)
      .set('Authorization', as(atlas[0]))
      .send({ satisfaction: 1, flowState: 1, blockers: 'flaky CI' });
    expect(posted.status).toBe(201);
    expect(posted.body).toEqual({
      surveyId: SURVEY,
      groupRef: 'group:default/atlas',
      submittedAt: expect.any(String),
      replaced: false,
    });
    const after = await request(server).get('/api/dora/surveys/pending').set('Authorization', as(atlas[0]));
    expect(after.body.surveys).toEqual([]);
    // Another user still has it pending: pending is per user.
    const other = await request(server).get('/api/dora/surveys/pending').set('Authorization', as(atlas[1]));
    expect(other.body.surveys.map((s: any) => s.id)).toEqual([SURVEY]);
  });

  it('replaces a user’s earlier answer instead of adding one', async () => {
    const second = await request(server)
      .post(`/api/dora/surveys/${SURVEY}/responses`)
      .set('Authorization', as(atlas[0]))
      .send({ satisfaction: 4, flowState: 3 });
    expect(second.status).toBe(200);
    expect(second.body.replaced).toBe(true);
    const rows = await query(
      env.adminUrl,
      `select satisfaction, flow_state, blockers_text from ${TABLE} where survey_id = $1 and user_ref = $2`,
      [SURVEY, atlas[0]],
    );
    expect(rows).toEqual([{ satisfaction: 4, flow_state: 3, blockers_text: null }]);
  });

  it('takes the respondent from sign-in, never from the body', async () => {
    const spoof = await request(server)
      .post(`/api/dora/surveys/${SURVEY}/responses`)
      .set('Authorization', as(atlas[1]))
      .send({ satisfaction: 5, flowState: 5, userRef: 'user:default/atlas-dev7' });
    expect(spoof.status).toBe(400);
    expect(spoof.body.error.message).toContain('signed-in user');
    const anonymous = await request(server)
      .post(`/api/dora/surveys/${SURVEY}/responses`)
      .set('Authorization', mockCredentials.none.header())
      .send({ satisfaction: 5, flowState: 5 });
    expect(anonymous.status).toBe(401);
    const service = await request(server)
      .post(`/api/dora/surveys/${SURVEY}/responses`)
      .set('Authorization', mockCredentials.service.header())
      .send({ satisfaction: 5, flowState: 5 });
    expect(service.status).toBe(403);
  });

  it('rejects bad answers with InputError naming the field', async () => {
    const cases: Array<[object, string]> = [
      [{ satisfaction: 6, flowState: 3 }, 'satisfaction must be an integer from 1 to 5'],
      [{ satisfaction: 3, flowState: 2.5 }, 'flowState must be an integer from 1 to 5'],
      [{ satisfaction: '3', flowState: 2 }, 'satisfaction must be an integer'],
      [{ satisfaction: 3, flowState: 2, blockers: 42 }, 'blockers must be text'],
      [{ satisfaction: 3, flowState: 2, blockers: 'x'.repeat(2001) }, 'at most 2000'],
      [{ satisfaction: 3, flowState: 2, groupRef: 'group:default/comet' }, 'not a member of group:default/comet'],
    ];
    for (const [body, message] of cases) {
      const response = await request(server)
        .post(`/api/dora/surveys/${SURVEY}/responses`)
        .set('Authorization', as(atlas[2]))
        .send(body);
      expect(response.status).toBe(400);
      expect(response.body.error.name).toBe('InputError');
      expect(response.body.error.message).toContain(message);
    }
    const unknown = await request(server)
      .post('/api/dora/surveys/no-such-survey/responses')
      .set('Authorization', as(atlas[2]))
      .send({ satisfaction: 3, flowState: 3 });
    expect(unknown.status).toBe(404);
    for (const closed of ['closed-one', 'future-one']) {
      const response = await request(server)
        .post(`/api/dora/surveys/${closed}/responses`)
        .set('Authorization', as(atlas[2]))
        .send({ satisfaction: 3, flowState: 3 });
      expect(response.status).toBe(400);
      expect(response.body.error.message).toContain('is not open');
    }
    const lonely = await request(server)
      .post(`/api/dora/surveys/${SURVEY}/responses`)
      .set('Authorization', as('user:default/lonely'))
      .send({ satisfaction: 3, flowState: 3 });
    expect(lonely.status).toBe(400);
    expect(lonely.body.error.message).toContain('not a member of any group');
    const twoTeams = await request(server)
      .post(`/api/dora/surveys/${SURVEY}/responses`)
      .set('Authorization', as('user:default/two-teams'))
      .send({ satisfaction: 3, flowState: 3 });
    expect(twoTeams.status).toBe(400);
    expect(twoTeams.body.error.message).toContain('groupRef is required');
    const stored = await query(env.adminUrl, `select count(*)::int as n from ${TABLE} where user_ref = $1`, [atlas[2]]);
    expect(stored[0].n).toBe(0);
  });

  it('is read by dora-pipeline run and shows aggregated (or suppressed) in team_space_survey', async () => {
    // atlas-dev1 answered 4/3 above (replacing 1/1); five more atlas answers, one borealis.
    const answers: Array<[string, number, number]> = [
      [atlas[1], 5, 4], [atlas[2], 3, 2], [atlas[3], 4, 4], [atlas[4], 2, 3],
      [borealis[0], 5, 5],
    ];
    for (const [user, satisfaction, flowState] of answers) {
      const response = await request(server)
        .post(`/api/dora/surveys/${SURVEY}/responses`)
        .set('Authorization', as(user))
        .send({ satisfaction, flowState, blockers: 'waiting for reviews' });
      expect(response.status).toBe(201);
    }
    if (!env.pipeline || !env.doraHome) {
      throw new Error('DORA_TEST_PIPELINE and DORA_TEST_HOME must be set (run-tests.sh sets them)');
    }
    await run(
      env.pipeline,
      ['run', '-q', '--source', 'survey', '--start', today, '--end', today],
      {
        env: {
          ...process.env,
          DORA_HOME: env.doraHome,
          SURVEY_DATABASE_URL: env.adminUrl,
          SURVEY_TABLE: TABLE,
        },
        timeout: 300000,
      },
    );
    const response = await request(server).get('/api/dora/groups/default/atlas');
    expect(response.status).toBe(200);
    const atlasRow = response.body.surveys.find((s: any) => s.survey_id === SURVEY);
    // 5 respondents (atlas-dev1's replaced answer counts once, as 4/3): published.
    expect(atlasRow).toMatchObject({
      respondents: 5,
      eligible_members: 7,
      suppressed: false,
      satisfaction_mean: 3.6, // (4 + 5 + 3 + 4 + 2) / 5
      flow_state_mean: 3.2, // (3 + 4 + 2 + 4 + 3) / 5
    });
    const [published] = await query(
      env.adminUrl,
      'select * from dora_metrics.team_space_survey where group_ref = $1 and survey_id = $2',
      ['group:default/atlas', SURVEY],
    );
    expect(Number(published.satisfaction_mean)).toBe(atlasRow.satisfaction_mean);
    expect(Number(published.respondents)).toBe(5);

    const small = await request(server).get('/api/dora/groups/default/borealis');
    const borealisRow = small.body.surveys.find((s: any) => s.survey_id === SURVEY);
    expect(borealisRow).toMatchObject({
      respondents: 1,
      suppressed: true,
      suppression_reason: 'fewer_than_k',
      satisfaction_mean: null,
      flow_state_mean: null,
    });
    // No route answers with any individual response or the free text.
    const everything = JSON.stringify([response.body, small.body]);
    expect(everything).not.toContain('waiting for reviews');
    expect(everything).not.toContain('atlas-dev');
  }, 300_000);
});
