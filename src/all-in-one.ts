import 'reflect-metadata';
import { createApi } from './api.js';
import { ConfigError, loadConfigFromProcess } from './config/app-config.js';
import { startWorker } from './worker.js';

/** API and worker in one process, for local use. Production runs main.js and worker.js separately. */
async function main(): Promise<void> {
  const config = await loadConfigFromProcess();
  await startWorker(config);
  const api = await createApi(config);
  await api.listen({ host: config.http.host, port: config.http.port });
}

main().catch((e: unknown) => {
  console.error(e instanceof ConfigError ? e.message : e);
  process.exit(1);
});
