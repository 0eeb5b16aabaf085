import { encodeToken, type RepoRef } from '../bus/index.js';

export const WRITES_STREAM = 'FORGE_REPO_WRITES';
export const WRITE_SUBJECT_ROOT = 'forge.write';
export const DEFAULT_PARTITIONS = 32;

/** FNV-1a, 32 bit: stable across processes, versions and platforms (unlike a runtime hash). */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** The partition of a repository: every write of one repository goes through the same one. */
export function partitionOf(repo: RepoRef, partitions: number): number {
  return fnv1a(`${repo.owner}/${repo.name}`) % partitions;
}

/** `forge.write.<partition>.<owner>.<name>` */
export function writeSubject(repo: RepoRef, partitions: number): string {
  return `${WRITE_SUBJECT_ROOT}.${partitionOf(repo, partitions)}.${encodeToken(repo.owner)}.${encodeToken(repo.name)}`;
}

/** Durable consumer of one partition, shared by every worker of the cluster. */
export function partitionConsumerName(partition: number): string {
  return `writes-p${partition}`;
}
