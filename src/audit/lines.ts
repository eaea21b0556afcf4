// Streams a segment line by line with byte offsets, in bounded memory: a 1 MiB read buffer plus at
// most one line of MAX_LINE_BYTES. Lines are handed over synchronously, so a million entries cost a
// few hundred reads, not a million promises.
import { open } from 'node:fs/promises';
import { MAX_LINE_BYTES } from './format.js';

const CHUNK_BYTES = 1024 * 1024;
const NEWLINE = 0x0a;

export interface LineInfo {
  /** Byte offset of the line's first byte. */
  offset: number;
  /** 1-based. */
  line: number;
}

export interface ScanSummary {
  /** File size in bytes as read (0 when the file does not exist). */
  size: number;
  /** Complete lines seen (each ended by a newline). */
  lines: number;
  /** Bytes after the last newline: a line whose writing never finished. */
  tail?: LineInfo & { bytes: number };
  /** Set when the callback asked to stop at that line. */
  stoppedAt?: LineInfo;
}

/**
 * Calls `onLine` for each complete line (without its newline); `raw` is null for a line longer than
 * MAX_LINE_BYTES. Returning false stops the scan. `raw` is only valid during the call.
 */
export async function scanLines(path: string, onLine: (raw: Buffer | null, at: LineInfo) => boolean): Promise<ScanSummary> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { size: 0, lines: 0 }; // fs errors are ErrnoExceptions
    throw err;
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    let carry: Buffer[] = [];
    let carryBytes = 0;
    let overlong = false;
    let fileOffset = 0;
    let lineStart = 0;
    let lines = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK_BYTES, fileOffset);
      if (bytesRead === 0) break;
      const chunkStart = fileOffset;
      fileOffset += bytesRead;
      let pos = 0;
      while (pos < bytesRead) {
        const nl = buf.indexOf(NEWLINE, pos);
        if (nl === -1 || nl >= bytesRead) {
          // The line goes on in the next chunk: keep it, unless it is already too long to matter.
          if (!overlong) {
            carry.push(Buffer.from(buf.subarray(pos, bytesRead)));
            carryBytes += bytesRead - pos;
            if (carryBytes > MAX_LINE_BYTES) { overlong = true; carry = []; carryBytes = 0; }
          }
          break;
        }
        let raw: Buffer | null;
        if (overlong) raw = null;
        else if (carryBytes > 0) raw = Buffer.concat([...carry, buf.subarray(pos, nl)]);
        else raw = buf.subarray(pos, nl);
        if (raw !== null && raw.length > MAX_LINE_BYTES) raw = null;
        const at = { offset: lineStart, line: lines + 1 };
        lines++;
        carry = [];
        carryBytes = 0;
        overlong = false;
        lineStart = chunkStart + nl + 1;
        pos = nl + 1;
        if (!onLine(raw, at)) return { size: (await fh.stat()).size, lines, stoppedAt: at };
      }
    }
    const size = fileOffset;
    return size > lineStart ? { size, lines, tail: { offset: lineStart, line: lines + 1, bytes: size - lineStart } } : { size, lines };
  } finally {
    await fh.close();
  }
}
