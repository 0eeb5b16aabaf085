import { Controller, Get } from '@nestjs/common';
import { Membership } from '../../cluster/index.js';

/** The live members of the cluster (GET /api/nodes). */
@Controller('api/nodes')
export class NodesController {
  constructor(private readonly membership: Membership) {}

  @Get()
  list() {
    return { nodes: this.membership.members() };
  }
}
