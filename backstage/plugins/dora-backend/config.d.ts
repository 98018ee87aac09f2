/** app-config keys of the DORA backend plugin. */
export interface Config {
  dora?: {
    /** The warehouse, read-only: a login role granted DORA_READER_ROLE (reads dora_metrics only). */
    database: {
      /**
       * A postgres:// URL or node-postgres connection fields.
       * @visibility secret
       */
      connection:
        | string
        | {
            host?: string;
            port?: number;
            user?: string;
            /** @visibility secret */
            password?: string;
            database?: string;
            ssl?: boolean | object;
          };
      /** Schema of the published tables. Default: dora_metrics. */
      schema?: string;
    };
    survey?: {
      /** Where survey responses are written (the pipeline reads it with SURVEY_DATABASE_URL). */
      database: {
        /**
         * A postgres:// URL or node-postgres connection fields.
         * @visibility secret
         */
        connection:
          | string
          | {
              host?: string;
              port?: number;
              user?: string;
              /** @visibility secret */
              password?: string;
              database?: string;
              ssl?: boolean | object;
            };
      };
      /** [schema.]table of the responses, as SURVEY_TABLE. Default: dora.survey_responses. */
      table?: string;
      /** Create the schema and table at startup when missing. Default: true. */
      createTable?: boolean;
    };
    /** The surveys in force. */
    surveys?: Array<{
      /** Survey id, as published in team_space_survey.survey_id. */
      id: string;
      /** The title shown in the banner and on the survey page. */
      title: string;
      /** First day (or ISO timestamp) answers are accepted, UTC. */
      opens: string;
      /** Last day (inclusive, UTC) or ISO timestamp (exclusive) answers are accepted. */
      closes: string;
    }>;
  };
}
