// Container health check without curl or wget in the image: GET the URL (default: the
// worker's liveness endpoint on --metrics-port 9464); exit 0 on a 2xx answer within 4 s, else 1.
// Usage: node docker/healthcheck.mjs [url]
const url = process.argv[2] ?? 'http://127.0.0.1:9464/healthz';
fetch(url, { signal: AbortSignal.timeout(4000) }).then(
  (res) => process.exit(res.ok ? 0 : 1),
  () => process.exit(1),
);
