import {
  HttpAuthService,
  LoggerService,
  UserInfoService,
} from '@backstage/backend-plugin-api';
import { InputError, NotFoundError, ServiceUnavailableError } from '@backstage/errors';
import express from 'express';
import Router from 'express-promise-router';
import { MetricsStore } from './metricsStore';
import { SurveyStore } from './surveyStore';

export interface RouterOptions {
  logger: LoggerService;
  httpAuth: HttpAuthService;
  userInfo: UserInfoService;
  metrics: MetricsStore;
  surveys?: SurveyStore;
}

const NAME = /^[a-z0-9][a-z0-9._-]*$/i;
const MAX_BLOCKERS = 2000;

/** `kind:namespace/name`, lower-case as the pipeline publishes it; InputError otherwise. */
function entityRef(kind: string, namespace: string, name: string): string {
  for (const [what, value] of Object.entries({ namespace, name })) {
    if (!NAME.test(value)) {
      throw new InputError(`invalid ${what} '${value}' in the entity ref`);
    }
  }
  return `${kind}:${namespace}/${name}`.toLocaleLowerCase('en-US');
}

function score(body: Record<string, unknown>, field: string): number {
  const value = body[field];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 5) {
    throw new InputError(`${field} must be an integer from 1 to 5, got ${JSON.stringify(value)}`);
  }
  return value;
}

export async function createRouter(options: RouterOptions): Promise<express.Router> {
  const { httpAuth, userInfo, metrics, surveys } = options;
  const router = Router();
  router.use(express.json({ limit: '16kb' }));

  router.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/components/:namespace/:name', async (req, res) => {
    const ref = entityRef('component', req.params.namespace, req.params.name);
    const result = await metrics.component(ref);
    if (!result) {
      throw new NotFoundError(
        `no DORA metrics published for ${ref}: the pipeline has not seen it in the catalog or in any deployment`,
      );
    }
    res.json(result);
  });

  router.get('/groups/:namespace/:name', async (req, res) => {
    const ref = entityRef('group', req.params.namespace, req.params.name);
    const result = await metrics.group(ref);
    if (!result) {
      throw new NotFoundError(
        `no DORA metrics or survey results published for ${ref}: it owns no component the pipeline knows`,
      );
    }
    res.json(result);
  });

  router.get('/candidates/:kind/:namespace/:name', async (req, res) => {
    const kind = req.params.kind.toLocaleLowerCase('en-US');
    if (kind !== 'component' && kind !== 'group') {
      throw new InputError(`improvement candidates exist for components and groups, not '${kind}'`);
    }
    const ref = entityRef(kind, req.params.namespace, req.params.name);
    res.json({ entityRef: ref, candidates: await metrics.candidates(ref) });
  });

  const surveyStore = (): SurveyStore => {
    if (!surveys) {
      throw new ServiceUnavailableError(
        'survey storage is not configured (dora.survey.database.connection)',
      );
    }
    return surveys;
  };

  /** The signed-in user and their groups, from Backstage auth only. */
  const signedInUser = async (req: express.Request) => {
    const credentials = await httpAuth.credentials(req, { allow: ['user'] });
    const info = await userInfo.getUserInfo(credentials);
    const groups = info.ownershipEntityRefs
      .map(r => r.toLocaleLowerCase('en-US'))
      .filter(r => r.startsWith('group:'))
      .sort();
    return { userRef: info.userEntityRef.toLocaleLowerCase('en-US'), groups };
  };

  router.get('/surveys/pending', async (req, res) => {
    const { userRef, groups } = await signedInUser(req);
    const store = surveyStore();
    const now = new Date();
    const open = store.surveys.filter(s => s.opens <= now && now < s.closes);
    const answered = await store.answered(userRef, open.map(s => s.id));
    res.json({
      // The groups an answer may be submitted for; none: nothing to ask.
      groups,
      surveys:
        groups.length === 0
          ? []
          : open
              .filter(s => !answered.has(s.id))
              .map(s => ({
                id: s.id,
                title: s.title,
                opens: s.opens.toISOString(),
                closes: s.closes.toISOString(),
              })),
    });
  });

  router.post('/surveys/:surveyId/responses', async (req, res) => {
    const { userRef, groups } = await signedInUser(req);
    const store = surveyStore();
    const survey = store.surveys.find(s => s.id === req.params.surveyId);
    if (!survey) {
      throw new NotFoundError(`no survey '${req.params.surveyId}' is configured in dora.surveys`);
    }
    const now = new Date();
    if (now < survey.opens || now >= survey.closes) {
      throw new InputError(
        `survey '${survey.id}' is not open (open from ${survey.opens.toISOString()} until ${survey.closes.toISOString()})`,
      );
    }
    const body = (req.body ?? {}) as Record<string, unknown>;
    for (const field of ['userRef', 'user_ref', 'user', 'respondent']) {
      if (field in body) {
        throw new InputError(`'${field}' is not accepted: the respondent is the signed-in user`);
      }
    }
    const satisfaction = score(body, 'satisfaction');
    const flowState = score(body, 'flowState');
    const blockers = body.blockers;
    if (blockers !== undefined && blockers !== null && typeof blockers !== 'string') {
      throw new InputError('blockers must be text');
    }
    if (typeof blockers === 'string' && blockers.length > MAX_BLOCKERS) {
      throw new InputError(`blockers must be at most ${MAX_BLOCKERS} characters`);
    }
    let groupRef: string;
    if (body.groupRef !== undefined) {
      groupRef = String(body.groupRef).toLocaleLowerCase('en-US');
      if (!groups.includes(groupRef)) {
        throw new InputError(`you are not a member of ${groupRef}; your groups: ${groups.join(', ') || 'none'}`);
      }
    } else if (groups.length === 1) {
      groupRef = groups[0];
    } else {
      throw new InputError(
        groups.length === 0
          ? 'you are not a member of any group, so the answer would count for no team'
          : `groupRef is required: you are a member of ${groups.join(', ')}`,
      );
    }
    const result = await store.submit({
      surveyId: survey.id,
      userRef,
      groupRef,
      satisfaction,
      flowState,
      blockers: typeof blockers === 'string' && blockers.trim() ? blockers.trim() : undefined,
    });
    // Echo only what this user just sent about themselves: no route reads answers back.
    res.status(result.replaced ? 200 : 201).json({
      surveyId: survey.id,
      groupRef,
      submittedAt: result.submittedAt,
      replaced: result.replaced,
    });
  });

  return router;
}
