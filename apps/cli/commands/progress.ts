/**
 * Progress for long commands: a cli-progress bar with rate and ETA on a terminal, plain
 * periodic lines otherwise (CI logs, pipes). Both go to stderr; stdout stays for data.
 */
import cliProgress from "cli-progress";
import { formatDuration } from "../../../shared/core/duration.ts";

export interface Progress {
  update(value: number, total: number | null, extra?: string): void;
  /** A line of text above the bar (or just a line, without a terminal). */
  log(line: string): void;
  stop(): void;
}

export interface ProgressOptions {
  label: string;
  unit: string;
  stream?: NodeJS.WriteStream;
  /** Force plain lines (default: plain unless the stream is a TTY). */
  plain?: boolean;
  /** Plain mode: seconds between lines (default 5). */
  everySeconds?: number;
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const t0 = Date.now();
  const rate = (value: number) => {
    const s = (Date.now() - t0) / 1000;
    return s > 0 ? value / s : 0;
  };
  if (!(opts.plain ?? !stream.isTTY)) {
    const multi = new cliProgress.MultiBar(
      {
        stream,
        format: `${opts.label} {bar} {percentage}% | {value}/{total} ${opts.unit} | {rate}/s | ETA {etaText} {extra}`,
        hideCursor: true,
        etaBuffer: 50,
        fps: 10,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    const bar = multi.create(1, 0, { rate: "0.0", etaText: "?", extra: "" });
    let stopped = false;
    return {
      update(value, total, extra = "") {
        if (stopped) return;
        if (total !== null) bar.setTotal(Math.max(total, value, 1));
        const r = rate(value);
        const etaText = total !== null && r > 0 ? formatDuration(Math.max(0, total - value) / r) : "?";
        bar.update(value, { rate: r.toFixed(1), etaText, extra });
      },
      log(line) {
        if (stopped) stream.write(`${line}\n`);
        else multi.log(`${line}\n`);
      },
      stop() {
        if (stopped) return;
        stopped = true;
        multi.stop();
      },
    };
  }
  const every = (opts.everySeconds ?? 5) * 1000;
  let last = 0;
  let state = { value: 0, total: null as number | null, extra: "" };
  const line = () => {
    const { value, total, extra } = state;
    const r = rate(value);
    const eta = total !== null && r > 0 ? formatDuration(Math.max(0, total - value) / r) : "?";
    const of = total !== null ? `/${total} (${total > 0 ? Math.floor((100 * value) / total) : 100}%)` : "";
    stream.write(`${opts.label}: ${value}${of} ${opts.unit}, ${r.toFixed(1)}/s, ETA ${eta}${extra ? ` ${extra}` : ""}\n`);
  };
  let stopped = false;
  return {
    update(value, total, extra = "") {
      state = { value, total, extra };
      if (Date.now() - last >= every) {
        last = Date.now();
        line();
      }
    },
    log(l) {
      stream.write(`${l}\n`);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      line();
    },
  };
}
