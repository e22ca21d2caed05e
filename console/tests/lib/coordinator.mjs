// Starts a real coordinator (the binary under test) on a free port with its own data dir.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from './client.mjs';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export async function startCoordinator({ bin, apiKey, env = {}, assetsDir = null }) {
  if (!existsSync(bin)) throw new Error(`no coordinator binary at ${bin} (set LEASEHOLD_BIN)`);
  const dir = mkdtempSync(join(tmpdir(), 'leasehold-console-'));
  const port = await freePort();
  const childEnv = { ...process.env, LEASEHOLD_LOG: 'warn', ...env };
  // No key: a keyless coordinator (the header picks the tenant).
  delete childEnv.ORCHESTRATOR_API_KEY;
  if (apiKey) childEnv.ORCHESTRATOR_API_KEY = apiKey;
  // The suite proves the binary serves its embedded files: never the dev folder, unless the
  // caller asks for it explicitly (`assetsDir`, for work on the console before a rebuild).
  delete childEnv.LEASEHOLD_CONSOLE_DIR;
  if (assetsDir) childEnv.LEASEHOLD_CONSOLE_DIR = assetsDir;
  const child = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')], {
    env: childEnv, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i += 1) {
    if (child.exitCode !== null) break;
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok) {
        return {
          url,
          log: () => log,
          async stop() {
            if (child.exitCode === null) {
              child.kill('SIGTERM');
              await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
              if (child.exitCode === null) child.kill('SIGKILL');
            }
            rmSync(dir, { recursive: true, force: true });
          },
        };
      }
    } catch { /* not up yet */ }
    await sleep(100);
  }
  child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`the coordinator did not become healthy:\n${log}`);
}
