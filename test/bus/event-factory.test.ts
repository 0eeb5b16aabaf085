import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BUILTIN_EVENTS, EventCatalog, EventFactory, InvalidEventError } from '../../src/bus/index.js';

const factory = new EventFactory(new EventCatalog(BUILTIN_EVENTS), 'node-1');
const web = { owner: 'acme', name: 'web' };

function refused(make: () => unknown, field: string): void {
  assert.throws(make, (err: unknown) => err instanceof InvalidEventError && err.field === field && err.code === 'INVALID_EVENT');
}

describe('event factory: what an event may carry', () => {
  it('refuses a field its scope does not allow, instead of dropping it silently', () => {
    refused(() => factory.create({ type: 'issue.deleted', repo: web, user: 'bob', payload: { number: 1 } }), 'user');
    refused(() => factory.create({ type: 'user.notification_count', user: 'bob', repo: web, payload: { count: 1 } }), 'repo');
    refused(() => factory.subjectOf({ ...factory.create({ type: 'user.notification_count', user: 'bob', payload: { count: 1 } }), repo: web }), 'repo');
  });

  it('refuses prototype keys anywhere in a payload', () => {
    refused(() => factory.create({ type: 'issue.deleted', repo: web, payload: JSON.parse('{"number":1,"__proto__":{"admin":true}}') as { number: number } }), 'payload.__proto__');
    refused(() => factory.create({ type: 'issue.deleted', repo: web, payload: JSON.parse('{"number":1,"constructor":{"prototype":{}}}') as { number: number } }), 'payload.constructor');
    const nested = '{"running":true,"issue":{"owner":"acme","name":"web","number":1,"__proto__":{"x":1}}}';
    refused(() => factory.create({ type: 'user.stopwatch_changed', user: 'bob', payload: JSON.parse(nested) as never }), 'payload.issue.__proto__');
  });
});
