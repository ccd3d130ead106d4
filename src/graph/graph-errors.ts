import { DomainError, ServiceUnavailable } from '../common/errors.js';

/** Neo4j cannot be reached, refused our credentials or timed out: reads answer 503, index runs fail and retry. */
export class GraphUnavailable extends ServiceUnavailable {
  constructor(reason: string) {
    super(
      'GRAPH_UNAVAILABLE',
      `the graph index (Neo4j) is unavailable: ${reason}. Graph queries work again once it is reachable.`,
    );
  }
}

/** No Neo4j is configured (NEO4J_URI unset): graph reads answer 503 with this. */
export class GraphDisabled extends ServiceUnavailable {
  constructor() {
    super(
      'GRAPH_DISABLED',
      'the graph index is disabled on this server: set NEO4J_URI, NEO4J_USER and NEO4J_PASSWORD to enable it',
    );
  }
}

/** A write touched fewer rows than it was given: the graph is not in the state the run expected. */
export class GraphWriteIncomplete extends Error {
  override readonly name = 'GraphWriteIncomplete';
}

/**
 * A repository, branch or commit the graph does not have for this tenant: not synced yet, unknown, or
 * another tenant's (which is answered exactly like an unknown one).
 */
export class GraphNotIndexed extends DomainError {
  readonly kind = 'not_found' as const;
  constructor(resource: 'repository' | 'branch' | 'commit', id: string) {
    super(
      `${resource.toUpperCase()}_NOT_INDEXED`,
      `${resource} ${id} is not in the graph index: it is unknown, or not synced yet`,
    );
  }
}
