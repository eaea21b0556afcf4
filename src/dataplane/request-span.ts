// Step 8's sibling: one RequestEvent per request, published when the response ends (or the
// connection closes), for metrics and trace export to subscribe to. When nobody subscribes, the
// cost is two clock reads and an object.
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { publishRequest, requestChannel, type RequestEvent, type RequestTrace } from '../core/events.js';

export class RequestSpan {
  route: string | undefined;
  service: string | undefined;
  path: string | undefined;
  code: string | undefined;
  upstreamError = false;
  private readonly startTime = Date.now();
  private readonly started = performance.now();

  constructor(
    res: ServerResponse,
    private readonly component: string,
    private readonly requestId: string,
    private readonly method: string,
    readonly trace: RequestTrace,
  ) {
    if (requestChannel.hasSubscribers) res.once('close', () => this.end(res));
  }

  /** Records a failure answered by Portcullis: a refusal, or (when allowed) the upstream's failure. */
  fail(code: string, allowed: boolean): void {
    this.code = code;
    this.upstreamError = allowed;
  }

  private end(res: ServerResponse): void {
    const event: RequestEvent = {
      component: this.component,
      requestId: this.requestId,
      method: this.method,
      status: res.headersSent ? res.statusCode : 0,
      startTime: this.startTime,
      durationSeconds: (performance.now() - this.started) / 1000,
      trace: this.trace,
    };
    if (this.path !== undefined) event.path = this.path;
    if (this.route !== undefined) event.route = this.route;
    if (this.service !== undefined) event.service = this.service;
    if (this.code !== undefined) event.code = this.code;
    if (this.upstreamError) event.upstreamError = true;
    publishRequest(event);
  }
}
