import { BaseRpcContext } from '@nestjs/microservices';
import type { DeliveredEvent, EventEnvelope } from '../../bus/index.js';

type ForgeBusContextArgs = [subject: string, event: DeliveredEvent | undefined];

/** What `@Ctx()` gives a forgebus handler: the subject and, for events, the stream position. */
export class ForgeBusContext extends BaseRpcContext<ForgeBusContextArgs> {
  getSubject(): string {
    return this.args[0];
  }

  /** FORGE_EVENTS sequence of the event (undefined for request/reply messages). */
  getSeq(): number | undefined {
    return this.args[1]?.seq;
  }

  getEnvelope(): EventEnvelope | undefined {
    return this.args[1]?.envelope;
  }
}
