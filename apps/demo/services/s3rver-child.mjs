// Runs s3rver in its own Node process; started by apps/demo/services/s3-server.ts as
//   node --openssl-legacy-provider s3rver-child.mjs <dir> <host> <port> <bucket>
// (s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only
// offers through the legacy provider). Prints one JSON line {"port":N} when listening.
// Exits when its stdin closes, so it never outlives the process that started it.
import S3rver from "s3rver";

const [dir, host, port, bucket] = process.argv.slice(2);
const server = new S3rver({
  address: host,
  port: Number(port),
  directory: dir,
  silent: true,
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }],
});

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  try {
    const done = server.close();
    server.httpServer?.closeAllConnections();
    await done;
  } finally {
    process.exit(0);
  }
}

const addr = await server.run();
process.stdout.write(`${JSON.stringify({ port: addr.port })}\n`);
process.stdin.on("end", shutdown);
process.stdin.on("error", shutdown);
process.stdin.resume();
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
