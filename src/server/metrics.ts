/**
 * Prometheus text exposition without a dependency: a few counters and one latency histogram, labelled by the
 * route pattern (never the raw URL, so ids do not explode the label set).
 */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics {
  private requests = new Map<string, number>();
  private hist = new Map<string, { buckets: number[]; sum: number; count: number }>();
  checkIns = 0;
  checkOuts = 0;
  failedLogins = 0;
  successfulLogins = 0;
  /** bcrypt computations (every failed login costs exactly one, whatever the reason). */
  passwordHashes = 0;
  readonly startedAt = Date.now();

  observe(method: string, route: string, status: number, seconds: number): void {
    const key = `method="${method}",route="${escape(route)}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    const hkey = `method="${method}",route="${escape(route)}"`;
    let h = this.hist.get(hkey);
    if (!h) this.hist.set(hkey, (h = { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]!) h.buckets[i]!++;
    h.sum += seconds;
    h.count++;
  }

  render(): string {
    const out: string[] = [];
    out.push('# HELP attendux_http_requests_total HTTP requests by route and status.');
    out.push('# TYPE attendux_http_requests_total counter');
    for (const [k, v] of this.requests) out.push(`attendux_http_requests_total{${k}} ${v}`);
    out.push('# HELP attendux_http_request_duration_seconds HTTP request latency.');
    out.push('# TYPE attendux_http_request_duration_seconds histogram');
    for (const [k, h] of this.hist) {
      BUCKETS.forEach((b, i) =>
        out.push(`attendux_http_request_duration_seconds_bucket{${k},le="${b}"} ${h.buckets[i]}`),
      );
      out.push(`attendux_http_request_duration_seconds_bucket{${k},le="+Inf"} ${h.count}`);
      out.push(`attendux_http_request_duration_seconds_sum{${k}} ${h.sum}`);
      out.push(`attendux_http_request_duration_seconds_count{${k}} ${h.count}`);
    }
    const counter = (name: string, help: string, v: number) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${v}`);
    counter('attendux_check_ins_total', 'Accepted check-ins.', this.checkIns);
    counter('attendux_check_outs_total', 'Accepted check-outs.', this.checkOuts);
    counter('attendux_failed_logins_total', 'Failed login attempts.', this.failedLogins);
    counter('attendux_logins_total', 'Successful logins.', this.successfulLogins);
    counter('attendux_password_hashes_total', 'bcrypt computations.', this.passwordHashes);
    out.push('# HELP attendux_process_start_time_seconds Start time of the process.');
    out.push('# TYPE attendux_process_start_time_seconds gauge');
    out.push(`attendux_process_start_time_seconds ${Math.floor(this.startedAt / 1000)}`);
    return out.join('\n') + '\n';
  }
}

function escape(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
