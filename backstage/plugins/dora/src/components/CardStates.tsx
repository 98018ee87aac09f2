import React, { ReactElement, useState } from 'react';
import useAsync from 'react-use/esm/useAsync';
import { stringifyEntityRef } from '@backstage/catalog-model';
import { useApi } from '@backstage/core-plugin-api';
import { EmptyState, InfoCard, Progress, ResponseErrorPanel } from '@backstage/core-components';
import { useEntity } from '@backstage/plugin-catalog-react';
import { DoraApi, doraApiRef } from '../api';

/** What an entity card loads: the entity's ref (lower-case, as the pipeline publishes
 * it), the backend's answer and the window the reader picked (30 days at first). */
export function useEntityMetrics<T>(load: (api: DoraApi, ref: string) => Promise<T | undefined>) {
  const { entity } = useEntity();
  const api = useApi(doraApiRef);
  const ref = stringifyEntityRef(entity).toLocaleLowerCase('en-US');
  const [windowDays, setWindowDays] = useState(30);
  const state = useAsync(() => load(api, ref), [api, ref]);
  return { ref, state, windowDays, setWindowDays };
}

/** The loading, error and "nothing published" states both entity cards share; the
 * loaded card comes from ``children``. */
export function CardStates<T>(props: {
  title: string;
  state: { loading: boolean; error?: Error; value?: T };
  errorTitle: string;
  isEmpty: (value: T) => boolean;
  emptyTitle: string;
  emptyDescription: string;
  children: (value: T) => ReactElement;
}) {
  const { title, state } = props;
  if (state.loading) {
    return (
      <InfoCard title={title}>
        <Progress />
      </InfoCard>
    );
  }
  if (state.error) {
    return <ResponseErrorPanel error={state.error} title={props.errorTitle} />;
  }
  if (state.value === undefined || state.value === null || props.isEmpty(state.value)) {
    return (
      <InfoCard title={title}>
        <EmptyState missing="data" title={props.emptyTitle} description={props.emptyDescription} />
      </InfoCard>
    );
  }
  return props.children(state.value);
}
