import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Protected branches (FORGE_PROTECTED_BRANCHES) as git's own `update` hook, which receive-pack
 * runs for each ref before it moves it: a refusal is git's ("! [remote rejected] main -> main
 * (hook declined)") and the hook's message reaches the user as "remote: …". A protected branch
 * can be pushed to, but not deleted and not force-pushed (its history rewritten).
 */
const UPDATE_HOOK = `#!/bin/sh
# forgebus: protected branches, from FORGE_PROTECTED_BRANCHES (space-separated names).
ref="$1"; old="$2"; new="$3"
case "$ref" in refs/heads/*) branch="\${ref#refs/heads/}" ;; *) exit 0 ;; esac
for protected in $FORGE_PROTECTED_BRANCHES; do
  [ "$protected" = "$branch" ] || continue
  case "$new" in
    *[!0]*) ;;
    *) echo "forgebus: branch $branch is protected: it cannot be deleted" >&2; exit 1 ;;
  esac
  case "$old" in
    *[!0]*)
      if ! git merge-base --is-ancestor "$old" "$new" 2>/dev/null; then
        echo "forgebus: branch $branch is protected: it cannot be force-pushed; pull (git pull --rebase), then push again" >&2
        exit 1
      fi ;;
  esac
done
exit 0
`;

/** Writes the hook into `<dataDir>/hooks` (when it differs) and returns that directory. */
export async function installPushHooks(dataDir: string): Promise<string> {
  const dir = join(dataDir, 'hooks');
  const file = join(dir, 'update');
  await mkdir(dir, { recursive: true });
  const current = await readFile(file, 'utf8').catch(() => undefined);
  if (current !== UPDATE_HOOK) {
    // Written aside and renamed: another node may run the hook at this moment.
    const part = `${file}.${process.pid}`;
    await writeFile(part, UPDATE_HOOK, { mode: 0o755 });
    await chmod(part, 0o755);
    await rename(part, file);
  }
  return dir;
}

/** FORGE_PROTECTED_BRANCHES: comma- or space-separated branch names. */
export function parseProtectedBranches(value: string | undefined): string[] {
  return (value ?? '')
    .split(/[\s,]+/)
    .map((b) => b.trim())
    .filter(Boolean);
}
