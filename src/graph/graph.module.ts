import {
  type DynamicModule,
  Inject,
  Injectable,
  Logger,
  Module,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { GraphConnection, type GraphConnectionSettings, type GraphTimeouts } from './graph-connection.js';
import { DisabledGraphIndex, GRAPH_INDEX, type GraphIndex } from './graph-index.js';
import { Neo4jGraphIndexer } from './graph-indexer.js';
import { DisabledGraphReader, GRAPH_READER, Neo4jGraphReader } from './graph-reader.js';
import { GraphController } from './graph.controller.js';

/** Holds the process's one connection, or null when the graph is disabled. */
const GRAPH_CONNECTION = Symbol('GRAPH_CONNECTION');
const GRAPH_ENSURE_SCHEMA_ON_START = Symbol('GRAPH_ENSURE_SCHEMA_ON_START');

interface ConnectionHolder {
  connection: GraphConnection | null;
}

export interface GraphModuleOptions {
  /** Overrides the driver's time budgets (tests). */
  timeouts?: GraphTimeouts;
  /** Create constraints and indexes in the background at start-up; true by default. */
  ensureSchemaOnStart?: boolean;
}

/**
 * Says at start-up whether the graph is on, ensures the schema in the background (start-up never waits on
 * Neo4j: the indexer ensures it again before its first write) and closes the driver on shutdown.
 */
@Injectable()
class GraphLifecycle implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('GraphIndex');

  constructor(
    @Inject(GRAPH_CONNECTION) private readonly holder: ConnectionHolder,
    @Inject(GRAPH_INDEX) private readonly index: GraphIndex,
    @Inject(GRAPH_ENSURE_SCHEMA_ON_START) private readonly ensureSchemaOnStart: boolean,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.index.enabled) {
      this.logger.log(
        'graph index disabled: NEO4J_URI is not set (indexing is skipped, graph reads answer 503)',
      );
      return;
    }
    if (!this.ensureSchemaOnStart) return;
    this.index.ensureSchema().then(
      () => this.logger.log('graph index ready: constraints and indexes are in place'),
      (error: unknown) =>
        this.logger.warn(
          `graph schema not ensured at start-up (retried before the first index run): ${
            error instanceof Error ? error.message : String(error)
          }`,
        ),
    );
  }

  async onApplicationShutdown(): Promise<void> {
    await this.holder.connection?.close();
  }
}

/** The graph index (for the sync engine, under GRAPH_INDEX), its reader and its read API. */
@Module({})
export class GraphModule {
  /** Neo4j when `settings` are given (NEO4J_URI set), else the disabled index and reader. */
  static forRoot(settings: GraphConnectionSettings | null, options: GraphModuleOptions = {}): DynamicModule {
    return {
      module: GraphModule,
      global: true,
      controllers: [GraphController],
      providers: [
        {
          provide: GRAPH_CONNECTION,
          useFactory: (): ConnectionHolder => ({
            connection: settings ? new GraphConnection(settings, options.timeouts) : null,
          }),
        },
        { provide: GRAPH_ENSURE_SCHEMA_ON_START, useValue: options.ensureSchemaOnStart ?? true },
        {
          provide: GRAPH_INDEX,
          inject: [GRAPH_CONNECTION],
          useFactory: ({ connection }: ConnectionHolder): GraphIndex =>
            connection ? new Neo4jGraphIndexer(connection) : new DisabledGraphIndex(),
        },
        {
          provide: GRAPH_READER,
          inject: [GRAPH_CONNECTION],
          useFactory: ({ connection }: ConnectionHolder) =>
            connection ? new Neo4jGraphReader(connection) : new DisabledGraphReader(),
        },
        GraphLifecycle,
      ],
      exports: [GRAPH_INDEX, GRAPH_READER],
    };
  }
}
