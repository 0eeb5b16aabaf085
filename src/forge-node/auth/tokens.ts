import { createSecretKey, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import { nameProblem } from '../params.js';

const keys = new Map<string, KeyObject>();
/** One key object per secret: jose would otherwise import the raw secret on every request. */
const keyFor = (secret: string): KeyObject => {
  let key = keys.get(secret);
  if (!key) keys.set(secret, (key = createSecretKey(Buffer.from(secret, 'utf8'))));
  return key;
};

/** Signs a demo/user token: HS256, `sub` = user name. */
export async function signUserToken(secret: string, user: string, expiresIn = '30d'): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(user)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(keyFor(secret));
}

export class TokenError extends Error {}

/**
 * Verifies a token and returns the user name, or throws TokenError with the reason. A token
 * signed with the right secret is still untrusted input: its claims may hold any JSON value.
 */
export async function verifyUserToken(secret: string, token: string): Promise<string> {
  let sub: unknown;
  try {
    const { payload } = await jwtVerify(token, keyFor(secret), { algorithms: ['HS256'] });
    sub = payload.sub;
  } catch (err) {
    const { code, message } = err as { code?: string; message?: string };
    if (code === 'ERR_JWT_EXPIRED') throw new TokenError('token expired');
    // jose's claim messages name the claim and the rule ('"exp" claim must be a number').
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') throw new TokenError(`invalid token: ${message}`);
    throw new TokenError('invalid token signature or format');
  }
  if (sub === undefined) throw new TokenError('token has no "sub" claim: it must name the user');
  const problem = nameProblem(sub);
  if (problem) throw new TokenError(`token "sub" claim is not a valid user name: it ${problem}`);
  return sub as string;
}
