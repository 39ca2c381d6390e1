'use strict';
// The OpenTelemetry JavaScript SDK exporting to CloudWatchDog (run by tests/test_otel_js.py):
//   node export.js <json|proto> <base url> <service.name> [cumulative|delta]   (API key in CWD_KEY)
// Exports a gauge, a counter and a histogram three times (two flushes and the export at shutdown)
// through one of the SDK's OTLP/HTTP exporters, and exits 1 if any export fails or the server
// refuses a point (the SDK only logs a partial success, so its log is watched here).
const { diag, DiagLogLevel } = require('@opentelemetry/api');
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const http = require('@opentelemetry/exporter-metrics-otlp-http');
const proto = require('@opentelemetry/exporter-metrics-otlp-proto');

// Recorded in each of the two rounds. With the SDK's default bounds (0, 5, 10, 25, 50, 75, 100,
// 250, 500, ...) the 0.9 quantile of a round falls inside the (250, 500] bucket.
const LATENCIES_MS = [3, 7, 12, 30, 60, 80, 300, 350, 400, 450];
const TEMPERATURES = [21.5, 22.0, 22.5];

async function main() {
  const [encoding, baseUrl, service, temporality = 'cumulative'] = process.argv.slice(2);
  const problems = [];
  const keep = (...args) => problems.push(args.map(String).join(' '));
  diag.setLogger({ error: keep, warn: keep, info() {}, debug() {}, verbose() {} }, DiagLogLevel.WARN);

  const Exporter = { json: http.OTLPMetricExporter, proto: proto.OTLPMetricExporter }[encoding];
  const exporter = new Exporter({
    url: `${baseUrl}/v1/metrics`,
    headers: { Authorization: `Bearer ${process.env.CWD_KEY}` },
    temporalityPreference: temporality === 'delta'
      ? http.AggregationTemporalityPreference.DELTA : http.AggregationTemporalityPreference.CUMULATIVE,
  });
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3600000 });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({ 'service.name': service, 'host.name': 'web-1', 'deployment.environment': 'ci' }),
    readers: [reader],
  });
  const meter = provider.getMeter('shop');
  let reading = 0;
  meter.createObservableGauge('room.temperature', { unit: 'Cel' }).addCallback((result) => {
    result.observe(TEMPERATURES[Math.min(reading++, TEMPERATURES.length - 1)], { room: 'a' });
  });
  const requests = meter.createCounter('http.requests', { unit: '{request}' });
  const latency = meter.createHistogram('http.server.duration', { unit: 'ms' });

  for (const added of [5, 3]) {
    requests.add(added, { route: '/cart' });
    for (const value of LATENCIES_MS) latency.record(value, { route: '/cart' });
    await provider.forceFlush();
    await new Promise((resolve) => setTimeout(resolve, 1100));
  }
  await provider.shutdown();
  if (problems.length) {
    console.error(problems.join('\n'));
    process.exit(1);
  }
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
