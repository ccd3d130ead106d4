// Preload for the Prisma CLI: its timers must not keep the process alive once the command is done.
const originalSetTimeout = globalThis.setTimeout;
const originalSetInterval = globalThis.setInterval;
globalThis.setTimeout = (...args) => {
  const timer = originalSetTimeout(...args);
  timer?.unref?.();
  return timer;
};
globalThis.setInterval = (...args) => {
  const timer = originalSetInterval(...args);
  timer?.unref?.();
  return timer;
};
