import {
  createParamDecorator,
  Inject,
  Injectable,
  SetMetadata,
  UnauthorizedException,
  type CanActivate,
  type ExecutionContext,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { TokenError, verifyUserToken } from './tokens.js';

const PUBLIC = 'forge-node:public';
/** Route needs no token (health, the web page). */
export const Public = () => SetMetadata(PUBLIC, true);

type AuthedRequest = Request & { user?: string };

/** `Authorization: Bearer <JWT>` on every route not marked @Public(); 401 with the reason. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, [context.getHandler(), context.getClass()])) return true;
    const request = context.switchToHttp().getRequest<AuthedRequest>();
    const header = request.headers.authorization;
    if (!header) throw new UnauthorizedException('missing Authorization header: send "Authorization: Bearer <token>"');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new UnauthorizedException('Authorization header must be "Bearer <token>"');
    try {
      request.user = await verifyUserToken(this.config.secret, match[1]!);
    } catch (err) {
      if (err instanceof TokenError) throw new UnauthorizedException(err.message);
      throw err;
    }
    return true;
  }
}

/** The authenticated user's name. */
export const CurrentUser = createParamDecorator((_: unknown, context: ExecutionContext): string => {
  const user = context.switchToHttp().getRequest<AuthedRequest>().user;
  if (!user) throw new UnauthorizedException('not authenticated');
  return user;
});
