import 'reflect-metadata';
import { ConfigError, loadConfigFromProcess } from './config/app-config.js';
import { createApi } from './api.js';

/** HTTP API entry point. */
async function main(): Promise<void> {
  const config = await loadConfigFromProcess();
  const app = await createApi(config);
  await app.listen({ host: config.http.host, port: config.http.port });
}

main().catch((e: unknown) => {
  if (e instanceof ConfigError) {
    console.error(e.message);
  } else {
    console.error('reposync API failed to start:', e);
  }
  process.exit(1);
});
