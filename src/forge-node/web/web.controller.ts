import { randomBytes } from 'node:crypto';
import { Controller, Delete, Get, Header, HttpCode, Inject, Post, Req, Res } from '@nestjs/common';
import { parse, serialize, type SerializeOptions } from 'cookie';
import type { Request, Response } from 'express';
import { decodeJwt } from 'jose';
import { ForgeBus } from '../../index.js';
import { CurrentToken, CurrentUser, Public, SESSION_COOKIE } from '../auth/auth.guard.js';
import { TokenError, verifyUserToken } from '../auth/tokens.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { renderPage } from './page.js';

const DEFAULT_MAX_AGE_S = 30 * 24 * 3600;

/**
 * The web page and its session: `GET /` (the page), `POST /api/session` (Bearer token → HttpOnly
 * SameSite=Strict cookie, so the page's EventSource, which cannot send headers, authenticates),
 * `GET /api/session` (who the cookie belongs to), `DELETE /api/session` (clears the cookie).
 */
@Controller()
export class WebController {
  private readonly eventTypes: string[];

  constructor(
    bus: ForgeBus,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
  ) {
    this.eventTypes = [...bus.catalog.types(), 'reset', 'access-revoked'];
  }

  @Get()
  @Public()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  @Header('X-Content-Type-Options', 'nosniff')
  @Header('Referrer-Policy', 'no-referrer')
  page(@Res({ passthrough: true }) res: Response): string {
    const nonce = randomBytes(16).toString('base64');
    res.setHeader(
      'Content-Security-Policy',
      [
        "default-src 'none'",
        `script-src 'nonce-${nonce}'`,
        `style-src 'nonce-${nonce}'`,
        "connect-src 'self'",
        'img-src data:',
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join('; '),
    );
    return renderPage({ nonce, eventTypes: this.eventTypes, nodeId: this.config.nodeId });
  }

  /**
   * Bearer token (checked by the global guard, which takes no cookie here) → the session cookie
   * (`SESSION_COOKIE`, read by the guard on `@AcceptBrowserTokens()` routes), for the token's lifetime.
   */
  @Post('api/session')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  session(
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
    @CurrentUser() user: string,
    @CurrentToken() token: string,
  ): { user: string } {
    let maxAge = DEFAULT_MAX_AGE_S;
    const exp = decodeJwt(token).exp;
    if (typeof exp === 'number') maxAge = Math.max(0, Math.floor(exp - Date.now() / 1000));
    res.append('Set-Cookie', serialize(SESSION_COOKIE, token, this.cookieOptions(req, maxAge)));
    return { user };
  }

  /** The signed-in user of the session cookie, or `{ user: null }` (no cookie, expired, invalid). */
  @Get('api/session')
  @Public()
  @Header('Cache-Control', 'no-store')
  async whoami(@Req() req: Request): Promise<{ user: string | null }> {
    const token = parse(req.headers.cookie ?? '')[SESSION_COOKIE];
    if (!token) return { user: null };
    try {
      return { user: await verifyUserToken(this.config.secret, token) };
    } catch (err) {
      if (err instanceof TokenError) return { user: null };
      throw err;
    }
  }

  @Delete('api/session')
  @Public()
  @HttpCode(204)
  signOut(@Req() req: Request, @Res({ passthrough: true }) res: Response): void {
    res.append('Set-Cookie', serialize(SESSION_COOKIE, '', { ...this.cookieOptions(req, 0), expires: new Date(0) }));
  }

  private cookieOptions(req: Request, maxAge: number): SerializeOptions {
    // Secure when the page itself came over https (a TLS-terminating proxy must set trust proxy).
    return { httpOnly: true, sameSite: 'strict', path: '/', maxAge, secure: req.secure };
  }
}
