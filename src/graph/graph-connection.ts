import neo4j, { type Driver, Neo4jError, type QueryResult, type RecordShape } from 'neo4j-driver';
import type { CypherStatement } from './graph-cypher.js';
import { GraphUnavailable } from './graph-errors.js';

/** Where Neo4j is: from NEO4J_URI, NEO4J_USER, NEO4J_PASSWORD and NEO4J_DATABASE. */
export interface GraphConnectionSettings {
  uri: string;
  user: string;
  password: string;
  /** The server's default database when unset. */
  database?: string | null;
}

/** Time budgets that keep a dead or unreachable Neo4j from holding up start-up, a sync or a request. */
export interface GraphTimeouts {
  /** Opening one TCP connection (a closed port fails at once, a black-holed host after this). */
  connectionTimeoutMs: number;
  /** Waiting for a pooled connection, including opening it. */
  connectionAcquisitionTimeoutMs: number;
  /** Total time managed write transactions are retried on transient errors (deadlocks, leader switch). */
  maxTransactionRetryTimeMs: number;
  /** Server-side limit of one read transaction. */
  readTimeoutMs: number;
}

export const DEFAULT_GRAPH_TIMEOUTS: GraphTimeouts = {
  connectionTimeoutMs: 3_000,
  connectionAcquisitionTimeoutMs: 5_000,
  maxTransactionRetryTimeMs: 10_000,
  readTimeoutMs: 15_000,
};

/** A row of a result, as a plain object. */
export type GraphRow = Record<string, unknown>;

/** Runs statements inside one read transaction. */
export type GraphReadRunner = <P extends object>(
  statement: CypherStatement<P>,
  params: P,
) => Promise<GraphRow[]>;

const UNAVAILABLE_CODES = new Set([neo4j.error.SERVICE_UNAVAILABLE, neo4j.error.SESSION_EXPIRED]);

/** Turns connectivity, authentication and pool-timeout failures into GraphUnavailable; others pass through. */
export function toGraphError(error: unknown): unknown {
  if (error instanceof GraphUnavailable) return error;
  if (error instanceof Neo4jError) {
    const firstLine = error.message.split('\n')[0] ?? error.message;
    if (UNAVAILABLE_CODES.has(error.code)) return new GraphUnavailable(firstLine);
    if (error.code.startsWith('Neo.ClientError.Security.')) {
      return new GraphUnavailable(
        `credentials rejected (${error.code}): check NEO4J_USER and NEO4J_PASSWORD`,
      );
    }
    if (/^(Connection acquisition timed out|Failed to establish connection)/.test(error.message)) {
      return new GraphUnavailable(firstLine);
    }
    if (error.code === 'Neo.ClientError.Database.DatabaseNotFound') {
      return new GraphUnavailable(`${firstLine}: check NEO4J_DATABASE`);
    }
  }
  return error;
}

/**
 * The one Neo4j driver of the process, shared by the indexer and the reader: parameterised statements only,
 * integers as JavaScript numbers, short timeouts, failures to reach the server as GraphUnavailable.
 */
export class GraphConnection {
  private readonly driver: Driver;
  private closing: Promise<void> | null = null;

  constructor(
    readonly settings: GraphConnectionSettings,
    readonly timeouts: GraphTimeouts = DEFAULT_GRAPH_TIMEOUTS,
  ) {
    this.driver = neo4j.driver(settings.uri, neo4j.auth.basic(settings.user, settings.password), {
      connectionTimeout: timeouts.connectionTimeoutMs,
      connectionAcquisitionTimeout: timeouts.connectionAcquisitionTimeoutMs,
      maxTransactionRetryTime: timeouts.maxTransactionRetryTimeMs,
      // Counts and sizes stay far below 2^53; plain numbers keep Neo4j's Integer out of every caller.
      disableLosslessIntegers: true,
      userAgent: 'reposync',
      maxConnectionPoolSize: 20,
    });
  }

  /** The database name, or undefined for the server's default. */
  get database(): string | undefined {
    return this.settings.database || undefined;
  }

  /**
   * Runs one statement in a managed transaction on the leader (retried on transient errors, causally after
   * every earlier one); returns its rows. Used for every write and for reads an index run depends on.
   */
  async execute<P extends object>(statement: CypherStatement<P>, params: P): Promise<GraphRow[]> {
    try {
      const result = await this.driver.executeQuery(statement.text, params, {
        database: this.database,
        routing: neo4j.routing.WRITE,
      });
      return result.records.map((record) => record.toObject());
    } catch (error) {
      throw toGraphError(error);
    }
  }

  /**
   * Runs `work` in one read transaction, without retries: a dashboard request fails fast with 503 rather
   * than waiting out a retry budget.
   */
  async read<T>(work: (run: GraphReadRunner) => Promise<T>): Promise<T> {
    const session = this.driver.session({ database: this.database, defaultAccessMode: neo4j.session.READ });
    try {
      const tx = await session.beginTransaction({ timeout: this.timeouts.readTimeoutMs });
      try {
        const run: GraphReadRunner = async (statement, params) => {
          const result: QueryResult<RecordShape> = await tx.run(statement.text, params);
          return result.records.map((record) => record.toObject());
        };
        const value = await work(run);
        await tx.commit();
        return value;
      } finally {
        if (tx.isOpen()) await tx.close();
      }
    } catch (error) {
      throw toGraphError(error);
    } finally {
      await session.close();
    }
  }

  /** Proves the server answers and accepts our credentials; throws GraphUnavailable otherwise. */
  async ping(): Promise<{ address: string; agent: string }> {
    try {
      const info = await this.driver.getServerInfo({ database: this.database });
      return { address: info.address ?? this.settings.uri, agent: info.agent ?? 'neo4j' };
    } catch (error) {
      throw toGraphError(error);
    }
  }

  /** Closes every connection; later calls wait for the same close. */
  close(): Promise<void> {
    this.closing ??= this.driver.close();
    return this.closing;
  }
}
