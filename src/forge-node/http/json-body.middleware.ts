import {
  BadRequestException,
  Injectable,
  PayloadTooLargeException,
  UnsupportedMediaTypeException,
  type NestMiddleware,
} from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { describeType } from '../params.js';
import { jsonDepth } from './json-depth.js';

/** Largest accepted request body: the limit of the parser this middleware replaced (Express's JSON default). */
export const JSON_BODY_LIMIT_BYTES = 100 * 1024;

/**
 * Commits carry a file of up to 512 Ki characters (CommitDto), which JSON escaping can make
 * several times larger: their route takes more (the write queue then refuses, with a 413, what
 * would not fit in one NATS message).
 */
export const COMMIT_BODY_LIMIT_BYTES = 8 * 1024 * 1024;

const limitOf = (req: Request) => (req.method === 'POST' && /\/commits\/?(\?|$)/.test(req.originalUrl) ? COMMIT_BODY_LIMIT_BYTES : JSON_BODY_LIMIT_BYTES);

/**
 * Deepest accepted JSON body. The API's bodies are flat objects; deeper ones only serve to
 * overflow the stack of the recursive transformer/validator behind the ValidationPipe.
 */
export const JSON_MAX_DEPTH = 32;

/** Methods whose bodies the API reads; other methods' bodies are left unread. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The one body parser of the forge node (main.ts turns Nest's default parsers off): a body must
 * be UTF-8 JSON sent as `application/json`, an object, at most JSON_BODY_LIMIT_BYTES and
 * JSON_MAX_DEPTH deep; anything else is refused here, with the rule it broke, before the
 * ValidationPipe sees it. The form parser is gone on purpose: a form or text body used to reach
 * the validator as `{ '{"name":"web"}': '' }` and come back as a puzzling "property … should not
 * exist".
 */
@Injectable()
export class JsonBodyMiddleware implements NestMiddleware {
  async use(req: Request, res: Response, next: NextFunction): Promise<void> {
    if (!BODY_METHODS.has(req.method)) return next();
    if (!hasBody(req)) {
      // No body reads as an empty object, as it did before Express 5: handlers with only
      // optional fields (PATCH of an issue) would otherwise get undefined and fail with a 500.
      req.body = {};
      return next();
    }
    requireJsonContentType(req);
    // Another parser got there first (an app built with Nest's defaults): check what it made.
    if ((req as { _body?: boolean })._body === true) {
      req.body = checkedBody(req.body);
      return next();
    }
    let bytes: Buffer;
    try {
      bytes = await readBody(req, limitOf(req));
    } catch (err) {
      // The rest of an oversized body is not worth reading: close the connection after answering.
      if (err instanceof PayloadTooLargeException) res.setHeader('Connection', 'close');
      throw err;
    }
    req.body = parseBody(bytes);
    next();
  }
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function requireJsonContentType(req: Request): void {
  const type = req.headers['content-type'];
  if (!type || !req.is('application/json')) {
    throw new UnsupportedMediaTypeException(
      `request body must be JSON sent with "content-type: application/json" (got ${type ? JSON.stringify(type.slice(0, 100)) : 'no content-type'})`,
    );
  }
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(type)?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new UnsupportedMediaTypeException(`JSON bodies must be UTF-8 (got charset ${JSON.stringify(charset.slice(0, 40))})`);
  }
  const encoding = req.headers['content-encoding']?.trim().toLowerCase();
  if (encoding && encoding !== 'identity') {
    throw new UnsupportedMediaTypeException(`content-encoding ${JSON.stringify(encoding.slice(0, 40))} is not supported: send the body uncompressed`);
  }
}

function tooLarge(limit: number, declared?: number): PayloadTooLargeException {
  const size = declared === undefined ? 'request body is larger than' : `request body is ${declared} bytes, more than`;
  return new PayloadTooLargeException(`${size} the limit of ${limit} bytes (${limit / 1024} KiB)`);
}

/** The body's bytes, refused as soon as it is known to be larger than `limit`. */
function readBody(req: Request, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(tooLarge(limit, declared));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (outcome: () => void) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      outcome();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) settle(() => reject(tooLarge(limit)));
      else chunks.push(chunk);
    };
    const onEnd = () => settle(() => resolve(Buffer.concat(chunks, size)));
    const onError = () => settle(() => reject(new BadRequestException('the request body could not be read (connection error)')));
    const onClose = () => settle(() => reject(new BadRequestException('the request body ended before its declared length')));
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

function parseBody(bytes: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new BadRequestException('request body is not valid UTF-8');
  }
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BadRequestException(`request body is not valid JSON: ${(err as Error).message}`);
  }
  return checkedBody(value);
}

function checkedBody(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadRequestException(`request body must be a JSON object (got ${describeType(value)})`);
  }
  if (jsonDepth(value, JSON_MAX_DEPTH) > JSON_MAX_DEPTH) {
    throw new BadRequestException(`request body nests objects and arrays deeper than the limit of ${JSON_MAX_DEPTH} levels; send a flat JSON object`);
  }
  return value;
}
