import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  Ctx,
  EventPattern,
  MessagePattern,
  NatsRequestJSONDeserializer,
  NatsResponseJSONDeserializer,
  Payload,
  type IncomingRequest,
  type IncomingResponse,
  type OutgoingRequest,
  type OutgoingResponse,
} from '@nestjs/microservices';
// Nest 12 does not re-export its serializers from the package root.
import { NatsRecordSerializer } from '@nestjs/microservices/serializers/nats-record.serializer.js';
import { firstValueFrom, range, toArray } from 'rxjs';
import { silentLogger, type EventEnvelope } from '../../src/bus/index.js';
import {
  ForgeBusClient,
  ForgeBusContext,
  ForgeBusRpcError,
  ForgeBusServer,
  type ForgeBusClientCodecOptions,
  type ForgeBusServerCodecOptions,
} from '../../src/nest/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

// A codec that is not JSON on the wire: `FBX1:` + base64(JSON), marked by a header. Whatever
// reaches a peer in another format is refused, so a test passes only if both ends use it.
const PREFIX = 'FBX1:';
const CONTENT_TYPE = 'application/x-fbx';

function encodeFbx(value: unknown) {
  const h = headers();
  h.set('Content-Type', CONTENT_TYPE);
  return { data: PREFIX + Buffer.from(JSON.stringify(value)).toString('base64'), headers: h };
}

function decodeFbx<T>(msg: Msg): T {
  const text = msg.string();
  if (msg.headers?.get('Content-Type') !== CONTENT_TYPE || !text.startsWith(PREFIX)) throw new Error('not an FBX message');
  return JSON.parse(Buffer.from(text.slice(PREFIX.length), 'base64').toString()) as T;
}

class FbxCounters {
  serialized = 0;
  deserialized = 0;
  refused = 0;
  deserializeOptions: unknown[] = [];
}

function fbxServerCodec(counters: FbxCounters): Required<ForgeBusServerCodecOptions> {
  return {
    serializer: { serialize: (packet: OutgoingResponse) => (counters.serialized++, encodeFbx(packet)) },
    deserializer: {
      deserialize: (msg: Msg, options?: Record<string, unknown>) => {
        counters.deserializeOptions.push(options);
        try {
          const request = decodeFbx<IncomingRequest>(msg);
          counters.deserialized++;
          return request;
        } catch (err) {
          counters.refused++;
          throw err;
        }
      },
    },
  };
}

function fbxClientCodec(counters: FbxCounters): Required<ForgeBusClientCodecOptions> {
  return {
    serializer: { serialize: async (packet: OutgoingRequest) => (counters.serialized++, encodeFbx(packet)) },
    deserializer: { deserialize: async (msg: Msg) => (counters.deserialized++, decodeFbx<IncomingResponse>(msg)) },
  };
}

const events: { seq: number | undefined; envelope: EventEnvelope }[] = [];

@Controller()
class CodecController {
  @MessagePattern('sum')
  sum(@Payload() numbers: number[]): number {
    return numbers.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('count')
  count(@Payload() n: number) {
    return range(1, n);
  }

  @EventPattern<string>('issue.deleted')
  onIssueDeleted(@Payload() envelope: EventEnvelope, @Ctx() ctx: ForgeBusContext): void {
    events.push({ seq: ctx.getSeq(), envelope });
  }
}

@Module({ controllers: [CodecController] })
class CodecModule {}

/** Records every request on `forge.rpc.>` and every message on an inbox, as they travel. */
class WireTap {
  readonly messages: { subject: string; reply?: string; text: string; contentType?: string }[] = [];
  private constructor(private readonly nc: NatsConnection) {}

  static async open(url: string): Promise<WireTap> {
    const tap = new WireTap(await connect({ servers: url, name: 'wire-tap' }));
    for (const subject of ['forge.rpc.>', '_INBOX.>']) {
      tap.nc.subscribe(subject, {
        callback: (_err, msg) => {
          tap.messages.push({ subject: msg.subject, reply: msg.reply, text: msg.string(), contentType: msg.headers?.get('Content-Type') });
        },
      });
    }
    await tap.nc.flush();
    return tap;
  }

  /** The requests sent on a pattern's subject, each with the replies sent to its inbox. */
  exchanges(pattern: string) {
    return this.messages
      .filter((m) => m.subject === `forge.rpc.${pattern}`)
      .map((request) => ({ request, replies: this.messages.filter((m) => m.subject === request.reply) }));
  }

  close(): Promise<void> {
    return this.nc.close();
  }
}

describe('ForgeBusServer / ForgeBusClient serializer and deserializer', () => {
  let nats: TestNats;
  let tap: WireTap;
  const busOptions = (nodeId: string) => ({ nodeId, connection: { servers: nats.url }, logger: silentLogger });

  before(async () => {
    nats = await startTestNats();
    tap = await WireTap.open(nats.url);
  });
  after(async () => {
    await tap?.close();
    await nats?.dispose();
  });

  /** Runs `body` with a microservice on `codec`, closed afterwards (one server per test: RPC is a queue group). */
  async function withService(codec: ForgeBusServerCodecOptions, body: () => Promise<void>): Promise<void> {
    const service: INestMicroservice = await NestFactory.createMicroservice(CodecModule, {
      strategy: new ForgeBusServer({ ...busOptions('codec-svc'), ...codec }),
      logger: false,
    });
    await service.listen();
    try {
      await body();
    } finally {
      await service.close();
    }
  }

  async function withClient(codec: ForgeBusClientCodecOptions, body: (client: ForgeBusClient) => Promise<void>): Promise<void> {
    const client = new ForgeBusClient({ ...busOptions('codec-client'), ...codec, requestTimeoutMs: 5_000 });
    await client.connect();
    try {
      await body(client);
    } finally {
      await client.close();
    }
  }

  it('send() travels in the custom format both ways, streamed replies included', async () => {
    const server = new FbxCounters();
    const client = new FbxCounters();
    await withService(fbxServerCodec(server), () =>
      withClient(fbxClientCodec(client), async (c) => {
        assert.equal(await firstValueFrom(c.send<number>('sum', [1, 2, 3, 4])), 10);
        assert.deepEqual(await firstValueFrom(c.send<number>('count', 5).pipe(toArray())), [1, 2, 3, 4, 5]);
      }),
    );
    assert.deepEqual([server.deserialized, server.refused], [2, 0]);
    assert.ok(server.serialized >= 2 && client.serialized === 2 && client.deserialized >= 2);
    const { channel, replyTo } = server.deserializeOptions[0] as { channel: string; replyTo: string };
    assert.equal(channel, 'sum', 'the deserializer is told the pattern, as Nest tells it the channel');
    assert.match(replyTo, /^_INBOX\./);
    await eventually(() => tap.exchanges('sum')[0]?.replies.length && tap.exchanges('count')[0]?.replies.length, 5_000, 'the tapped exchanges');
    for (const { request, replies } of [...tap.exchanges('sum'), ...tap.exchanges('count')]) {
      for (const m of [request, ...replies]) {
        assert.ok(m.text.startsWith(PREFIX), `FBX on the wire: ${m.text}`);
        assert.equal(m.contentType, CONTENT_TYPE, 'headers of the serializer travel');
      }
    }
  });

  it('a server with a custom deserializer refuses a plain JSON request; the JSON client reports a codec error', async () => {
    const server = new FbxCounters();
    await withService(fbxServerCodec(server), () =>
      withClient({}, async (c) => {
        await assert.rejects(firstValueFrom(c.send('sum', [1, 2])), (err: unknown) => {
          assert.ok(err instanceof ForgeBusRpcError, String(err));
          assert.equal(err.code, 'RPC_CODEC');
          assert.match(err.message, /unreadable reply to "sum".*same serializer\/deserializer/);
          return true;
        });
      }),
    );
    assert.equal(server.refused, 1, "the server's deserializer saw the request");
  });

  it('@EventPattern handlers get the feed\'s envelope: the deserializer does not apply to events', async () => {
    const server = new FbxCounters();
    const client = new FbxCounters();
    events.length = 0;
    await withService(fbxServerCodec(server), () =>
      withClient(fbxClientCodec(client), async (c) => {
        const published = (await firstValueFrom(c.emit('issue.deleted', { repo: { owner: 'acme', name: 'web' }, payload: { number: 7 } }))) as { seq: number };
        await eventually(() => events.length === 1, 10_000, 'the event in the @EventPattern handler');
        assert.equal(events[0]!.seq, published.seq);
        assert.equal(events[0]!.envelope.type, 'issue.deleted');
        assert.deepEqual(events[0]!.envelope.payload, { number: 7 });
      }),
    );
    assert.equal(server.deserialized + server.refused, 0);
    assert.equal(client.serialized, 0, 'emit() publishes the bus envelope, not a transport packet');
  });

  it("Nest's own NATS serializers and deserializers plug in", async () => {
    await withService({ serializer: new NatsRecordSerializer(), deserializer: new NatsRequestJSONDeserializer() }, () =>
      withClient({ serializer: new NatsRecordSerializer(), deserializer: new NatsResponseJSONDeserializer() }, async (c) => {
        assert.equal(await firstValueFrom(c.send<number>('sum', [5, 6])), 11);
      }),
    );
  });

  it('a serializer output that cannot travel fails the call with a codec error', async () => {
    await withClient({ serializer: { serialize: () => 42 as never } }, async (c) => {
      await assert.rejects(firstValueFrom(c.send('sum', [1])), (err: unknown) => {
        assert.ok(err instanceof ForgeBusRpcError, String(err));
        assert.equal(err.code, 'RPC_CODEC');
        assert.match(err.message, /cannot serialize the request to "sum": the ForgeBusClient serializer returned number: return a string, a Uint8Array or \{ data/);
        return true;
      });
    });
  });
});
