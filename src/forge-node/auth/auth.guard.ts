import type { IncomingHttpHeaders } from 'node:http';
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
import { parse as parseCookies } from 'cookie';
import type { Request } from 'express';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { TokenError, verifyUserToken } from './tokens.js';

const PUBLIC = 'forge-node:public';
/** Route needs no token (health, the web page). */
export const Public = () => SetMetadata(PUBLIC, true);

const BROWSER_TOKENS = 'forge-node:browser-tokens';
/**
 * Route also takes the token from the `access_token` query parameter or the session cookie:
 * for browsers' EventSource, which cannot set headers. Only for GET routes that change nothing
 * (a cookie is sent by the browser on its own, so it must never authorize a write).
 */
export const AcceptBrowserTokens = () => SetMetadata(BROWSER_TOKENS, true);

/** The session cookie set by the web page: its value is the user's JWT. */
export const SESSION_COOKIE = 'forge_token';

type AuthedRequest = Request & { user?: string; token?: string };

/**
 * `Authorization: Bearer <JWT>` on every route not marked @Public() (plus the query parameter
 * or cookie where @AcceptBrowserTokens() says so); 401 with the reason.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, [context.getHandler(), context.getClass()])) return true;
    const request = context.switchToHttp().getRequest<AuthedRequest>();
    const browser = this.reflector.getAllAndOverride<boolean>(BROWSER_TOKENS, [context.getHandler(), context.getClass()]);
    const token = tokenOfRequest(request, browser === true);
    request.user = await userOfToken(this.config.secret, token);
    request.token = token;
    return true;
  }
}

/**
 * What a request carries its token in. Express's Request has it; so has a plain node:http request
 * with its query string parsed the way Express parses it (node:querystring).
 */
export interface TokenCarrier {
  headers: IncomingHttpHeaders;
  query: Record<string, unknown>;
}

/**
 * The request's token, by the rules above (also used by the plain `GET /api/events` listener,
 * which runs ahead of Nest): the Authorization header, else, for `browser` routes, the
 * `access_token` query parameter or the session cookie; 401 saying what to send.
 */
export function tokenOfRequest(request: TokenCarrier, browser: boolean): string {
  const header = request.headers.authorization;
  if (header) {
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new UnauthorizedException('Authorization header must be "Bearer <token>"');
    return match[1]!;
  }
  if (browser) {
    const query = request.query.access_token;
    if (typeof query === 'string' && query !== '') return query;
    const cookie = request.headers.cookie ? parseCookies(request.headers.cookie)[SESSION_COOKIE] : undefined;
    if (cookie) return cookie;
    throw new UnauthorizedException(
      'no token: send "Authorization: Bearer <token>", the access_token query parameter, or sign in on the web page (cookie)',
    );
  }
  throw new UnauthorizedException('missing Authorization header: send "Authorization: Bearer <token>"');
}

/** The user a token names; 401 with the reason when it is not valid. */
export async function userOfToken(secret: string, token: string): Promise<string> {
  try {
    return await verifyUserToken(secret, token);
  } catch (err) {
    if (err instanceof TokenError) throw new UnauthorizedException(err.message);
    throw err;
  }
}

/** The authenticated user's name. */
export const CurrentUser = createParamDecorator((_: unknown, context: ExecutionContext): string => {
  const user = context.switchToHttp().getRequest<AuthedRequest>().user;
  if (!user) throw new UnauthorizedException('not authenticated');
  return user;
});

/** The verified token itself (for handing it on, e.g. as the session cookie). */
export const CurrentToken = createParamDecorator((_: unknown, context: ExecutionContext): string => {
  const token = context.switchToHttp().getRequest<AuthedRequest>().token;
  if (!token) throw new UnauthorizedException('not authenticated');
  return token;
});
