import {
  coreServices,
  createBackendPlugin,
} from '@backstage/backend-plugin-api';
import { readDoraConfig } from './service/config';
import { MetricsStore } from './service/metricsStore';
import { SurveyStore } from './service/surveyStore';
import { createRouter } from './service/router';
import { createPool } from './service/db';

/**
 * The `dora` backend plugin: routes under `/api/dora`.
 *
 * @public
 */
export const doraPlugin = createBackendPlugin({
  pluginId: 'dora',
  register(env) {
    env.registerInit({
      deps: {
        config: coreServices.rootConfig,
        logger: coreServices.logger,
        httpRouter: coreServices.httpRouter,
        httpAuth: coreServices.httpAuth,
        userInfo: coreServices.userInfo,
        lifecycle: coreServices.lifecycle,
      },
      async init({ config, logger, httpRouter, httpAuth, userInfo, lifecycle }) {
        const settings = readDoraConfig(config);
        const metricsPool = createPool(settings.metrics, logger, 'dora.database');
        const metrics = new MetricsStore(metricsPool, settings.metricsSchema);
        const surveyPool = settings.survey
          ? createPool(settings.survey.connection, logger, 'dora.survey.database')
          : undefined;
        const surveys = surveyPool
          ? new SurveyStore(
              surveyPool,
              settings.survey!.table,
              settings.surveys,
              settings.survey!.createTable,
            )
          : undefined;
        if (surveys && settings.survey!.createTable) {
          // A survey database that is down at startup must not stop the backend: the
          // table is created on the first write instead.
          await surveys.ensureTable().catch(error =>
            logger.warn(
              `dora: could not prepare the survey table ${settings.survey!.table} yet: ${error.message}`,
            ),
          );
        }
        httpRouter.use(
          await createRouter({ logger, httpAuth, userInfo, metrics, surveys }),
        );
        lifecycle.addShutdownHook(async () => {
          await metricsPool.end();
          await surveyPool?.end();
        });
        logger.info(
          `dora: reading ${settings.metricsSchema}; ${settings.surveys.length} survey(s) configured${
            surveys ? '' : ', survey storage off (no dora.survey.database)'
          }`,
        );
      },
    });
  },
});
