/**
 * git's pkt-line framing (gitprotocol-common), as much of it as a smart-HTTP push needs: the ref
 * update commands at the head of a receive-pack request, and the report-status a server answers
 * with, optionally multiplexed on side-band channels.
 */

export const FLUSH = Buffer.from('0000');
const ZERO_ID = /^0{40}$|^0{64}$/;
const OBJECT_ID = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;
/** The largest pkt-line git accepts (65520), minus the 4-byte header and one side-band byte. */
const MAX_SIDEBAND_DATA = 65515;

export function pktLine(data: string | Buffer): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, '0')), body]);
}

/** One ref update of a push: `<old> <new> <ref>`. */
export interface RefCommand {
  old: string;
  new: string;
  ref: string;
}

export const isZeroId = (id: string): boolean => ZERO_ID.test(id);

export class PktLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PktLineError';
  }
}

/**
 * The command list at the head of a receive-pack request: pkt-lines up to the first flush, the
 * first carrying the client's capabilities after a NUL. Undefined while `head` is incomplete.
 * `end` is where the pack (if any) starts.
 */
export function parseReceiveCommands(head: Buffer): { commands: RefCommand[]; capabilities: string[]; end: number } | undefined {
  const commands: RefCommand[] = [];
  let capabilities: string[] = [];
  let at = 0;
  for (;;) {
    if (head.length < at + 4) return undefined;
    const size = Number.parseInt(head.subarray(at, at + 4).toString('latin1'), 16);
    if (!Number.isInteger(size) || (size !== 0 && size < 4)) throw new PktLineError('malformed pkt-line length in the push request');
    if (size === 0) return { commands, capabilities, end: at + 4 };
    if (head.length < at + size) return undefined;
    let line = head.subarray(at + 4, at + size).toString('utf8');
    at += size;
    if (line.endsWith('\n')) line = line.slice(0, -1);
    const nul = line.indexOf('\0');
    if (nul >= 0) {
      if (commands.length === 0) capabilities = line.slice(nul + 1).split(' ').filter(Boolean);
      line = line.slice(0, nul);
    }
    // shallow lines and push-certificates are not ref updates: a push of a shallow clone and
    // signed pushes are not supported by this server (receive-pack would refuse them anyway).
    if (line.startsWith('shallow ') || line.startsWith('push-cert')) throw new PktLineError(`unsupported push request line "${line.split(' ')[0]}"`);
    const [oldId, newId, ref, extra] = line.split(' ');
    if (!oldId || !newId || !ref || extra !== undefined || !OBJECT_ID.test(oldId) || !OBJECT_ID.test(newId) || !ref.startsWith('refs/')) {
      throw new PktLineError('malformed ref update command in the push request');
    }
    commands.push({ old: oldId, new: newId, ref });
  }
}

/** The command list of a receive-pack request, to run receive-pack on fewer commands. */
export function encodeReceiveCommands(commands: RefCommand[], capabilities: string[]): Buffer {
  return Buffer.concat([
    ...commands.map((c, i) => pktLine(`${c.old} ${c.new} ${c.ref}${i === 0 && capabilities.length > 0 ? `\0${capabilities.join(' ')}` : ''}\n`)),
    FLUSH,
  ]);
}

/** The outcome of one ref of a push. */
export type RefStatus = { ref: string; ok: true } | { ref: string; ok: false; reason: string };

export interface PushReport {
  /** `ok`, or why the pack was not unpacked. */
  unpack: string;
  refs: RefStatus[];
}

/** Reads receive-pack's report-status (not multiplexed). */
export function parseReportStatus(output: Buffer): PushReport {
  const report: PushReport = { unpack: 'no report', refs: [] };
  let at = 0;
  while (at + 4 <= output.length) {
    const size = Number.parseInt(output.subarray(at, at + 4).toString('latin1'), 16);
    if (!Number.isInteger(size) || size === 0) break;
    const line = output.subarray(at + 4, at + size).toString('utf8').replace(/\n$/, '');
    at += size;
    if (line.startsWith('unpack ')) report.unpack = line.slice(7);
    else if (line.startsWith('ok ')) report.refs.push({ ref: line.slice(3), ok: true });
    else if (line.startsWith('ng ')) {
      const rest = line.slice(3);
      const space = rest.indexOf(' ');
      report.refs.push({ ref: space < 0 ? rest : rest.slice(0, space), ok: false, reason: space < 0 ? 'rejected' : rest.slice(space + 1) });
    }
  }
  return report;
}

/**
 * The response body of a push: report-status, plus messages for the user (git prints them as
 * `remote: …`), on side-band channels when the client asked for them (as it always does), else
 * the report alone (messages then have no place to go).
 */
export function encodePushResponse(report: PushReport, capabilities: string[], messages: string[] = []): Buffer {
  const status = Buffer.concat([
    pktLine(`unpack ${report.unpack}\n`),
    ...report.refs.map((r) => pktLine(r.ok ? `ok ${r.ref}\n` : `ng ${r.ref} ${r.reason.replace(/[\r\n]+/g, ' ')}\n`)),
    FLUSH,
  ]);
  const sideband = capabilities.includes('side-band-64k') || capabilities.includes('side-band');
  if (!sideband) return status;
  const max = capabilities.includes('side-band-64k') ? MAX_SIDEBAND_DATA : 995;
  const channel = (n: number, data: Buffer): Buffer[] => {
    const out: Buffer[] = [];
    for (let i = 0; i < data.length; i += max) out.push(pktLine(Buffer.concat([Buffer.from([n]), data.subarray(i, i + max)])));
    return out;
  };
  const text = messages.filter(Boolean).map((m) => `${m.replace(/\n+$/, '')}\n`).join('');
  return Buffer.concat([...(text ? channel(2, Buffer.from(text)) : []), ...channel(1, status), FLUSH]);
}

/** The request's capabilities minus side-band: receive-pack then reports plainly on stdout. */
export function withoutSideband(capabilities: string[]): string[] {
  const kept = capabilities.filter((c) => c !== 'side-band' && c !== 'side-band-64k' && c !== 'quiet');
  return kept.includes('report-status') || kept.includes('report-status-v2') ? kept : [...kept, 'report-status'];
}
