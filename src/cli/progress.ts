// A progress bar on standard error for long work, drawn only on a terminal (logs stay clean).
export interface Progress {
  tick(n?: number): void;
  done(): void;
}

export function progress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  let done = 0;
  let last = 0;
  const draw = (): void => {
    if (!stream.isTTY) return;
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    stream.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
  };
  return {
    tick(n = 1) {
      done += n;
      const now = Date.now();
      if (now - last > 100 || done >= total) { last = now; draw(); }
    },
    done() {
      draw();
      if (stream.isTTY) stream.write('\n');
    },
  };
}
