import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isAbsolute, resolve, sep } from 'node:path';

const SCHEMES = new Set(['http:', 'https:', 'file:', 'git:']);
export const ALLOWED_SOURCES = 'an http://, https://, file:// or git:// URL, or an absolute path';

/**
 * Why `from` may not be cloned, or undefined. git takes more than URLs (`ext::<command>`, options
 * such as `--upload-pack=…`), so only the allowed schemes and absolute paths pass, nothing that
 * starts with "-", and nothing inside the forge's own storage (a path there would copy another
 * user's private repository). Messages never echo server paths.
 */
export function migrationSourceProblem(from: unknown, dataDir: string): string | undefined {
  if (typeof from !== 'string') return 'must be a string';
  if (from.length === 0 || from.length > 2048) return 'must be 1 to 2048 characters';
  if (from.startsWith('-')) return 'must not start with "-"';
  if (/[\u0000-\u0020\u007f]/.test(from)) return 'must not contain spaces or control characters';
  let localPath: string | undefined;
  if (from.startsWith('/')) {
    localPath = from;
  } else {
    let url: URL;
    try {
      url = new URL(from);
    } catch {
      return `must be ${ALLOWED_SOURCES}`;
    }
    if (!SCHEMES.has(url.protocol)) return `must be ${ALLOWED_SOURCES} (not ${url.protocol}//)`;
    if (url.protocol === 'file:') {
      try {
        localPath = fileURLToPath(url);
      } catch {
        return 'must be a file:// URL of an absolute local path';
      }
    } else if (!url.hostname) return 'must name a host';
  }
  if (localPath !== undefined) {
    if (!isAbsolute(localPath)) return `must be ${ALLOWED_SOURCES}`;
    if (inside(real(localPath), real(dataDir))) return "must not point into the forge's own storage";
  }
  return undefined;
}

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

const inside = (path: string, dir: string) => path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
