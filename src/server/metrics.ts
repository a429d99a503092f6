import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The server's Prometheus metrics, rendered by prom-client (the text format, escaping and HELP/TYPE lines are
 * its job, and `promtool check metrics` passes on them). Labelled by the route pattern, never the raw URL,
 * so ids do not explode the label set. One registry per app, so tests that build several apps do not share
 * counters.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;
  private readonly requests = new Counter({
    name: 'attendux_http_requests_total',
    help: 'HTTP requests by route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: 'attendux_http_request_duration_seconds',
    help: 'HTTP request latency.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  private readonly counters = {
    checkIns: this.counter('attendux_check_ins_total', 'Accepted check-ins.'),
    checkOuts: this.counter('attendux_check_outs_total', 'Accepted check-outs.'),
    failedLogins: this.counter('attendux_failed_logins_total', 'Failed login attempts.'),
    successfulLogins: this.counter('attendux_logins_total', 'Successful logins.'),
    /** bcrypt computations (every failed login costs exactly one, whatever the reason). */
    passwordHashes: this.counter('attendux_password_hashes_total', 'bcrypt computations.'),
  };
  private readonly counts = {
    checkIns: 0,
    checkOuts: 0,
    failedLogins: 0,
    successfulLogins: 0,
    passwordHashes: 0,
  };
  readonly startedAt = Date.now();

  constructor() {
    // Not prom-client's collectDefaultMetrics: three of its gauges end in _total, which promtool rejects.
    new Gauge({
      name: 'attendux_process_start_time_seconds',
      help: 'Start time of the process.',
      registers: [this.registry],
    }).set(Math.floor(this.startedAt / 1000));
  }

  private counter(name: string, help: string): Counter {
    const c = new Counter({ name, help, registers: [this.registry] });
    c.inc(0); // present from the start: a scrape before the first check-in shows 0, not nothing
    return c;
  }

  // The route code counts with `metrics.checkIns++`: plain numbers whose increments reach the counters.
  get checkIns(): number {
    return this.counts.checkIns;
  }
  set checkIns(v: number) {
    this.bump('checkIns', v);
  }
  get checkOuts(): number {
    return this.counts.checkOuts;
  }
  set checkOuts(v: number) {
    this.bump('checkOuts', v);
  }
  get failedLogins(): number {
    return this.counts.failedLogins;
  }
  set failedLogins(v: number) {
    this.bump('failedLogins', v);
  }
  get successfulLogins(): number {
    return this.counts.successfulLogins;
  }
  set successfulLogins(v: number) {
    this.bump('successfulLogins', v);
  }

  get passwordHashes(): number {
    return this.counts.passwordHashes;
  }
  set passwordHashes(v: number) {
    this.bump('passwordHashes', v);
  }

  private bump(key: keyof Metrics['counts'], v: number): void {
    const delta = v - this.counts[key];
    if (delta > 0) this.counters[key].inc(delta);
    this.counts[key] = v;
  }

  observe(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method, route, status: String(status) });
    this.latency.observe({ method, route }, seconds);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
