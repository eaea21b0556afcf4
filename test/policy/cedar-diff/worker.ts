// A worker thread of runParallel: runs the cases i ≡ worker (mod workers) of its spec, reports
// each case's decision count, then its summary.
import { parentPort, workerData } from 'node:worker_threads';
import { runCases, type BatchSpec, type WorkerMessage } from './runner.js';

// runParallel is the only creator of this worker and always passes this shape.
const { spec, worker, workers } = workerData as { spec: BatchSpec; worker: number; workers: number };

function* indexes(): Generator<number> {
  for (let i = worker; i < spec.sets; i += workers) yield i;
}

const post = (m: WorkerMessage): void => parentPort?.postMessage(m);
try {
  const summary = runCases(spec, indexes(), (decisions) => post({ type: 'case', decisions }));
  post({ type: 'done', summary });
} catch (err) {
  post({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
}
