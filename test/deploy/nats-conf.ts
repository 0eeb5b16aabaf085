/**
 * A reader of nats-server's configuration syntax, enough for deploy/nats/nats-server.conf: maps
 * (`key: value`, `key = value`, `key { … }`), arrays, quoted and bare strings, numbers, booleans,
 * `#` and `//` comments, and `$NAME` references, resolved like nats-server does: a variable the
 * file defines in an enclosing block first, then the environment given. A reference to neither
 * stays an `EnvRef` (so a test can see which variables the file expects from its environment).
 * `include` is refused: the deploy file has none, and silently skipping one would hide settings.
 */

export class EnvRef {
  constructor(readonly name: string) {}
}

export type ConfValue = string | number | boolean | EnvRef | ConfValue[] | ConfMap;
export interface ConfMap {
  [key: string]: ConfValue;
}

export class NatsConfSyntaxError extends Error {
  constructor(message: string, text: string, at: number) {
    const line = text.slice(0, at).split('\n').length;
    super(`${message} (line ${line})`);
    this.name = 'NatsConfSyntaxError';
  }
}

export function parseNatsConf(text: string, env: Record<string, string | undefined> = {}): ConfMap {
  return new Parser(text, env).parseDocument();
}

const BARE_KEY = /[^\s:=,;{}[\]"']/;
const VARIABLE = /[A-Za-z0-9_]/;

class Parser {
  private i = 0;
  private readonly scopes: ConfMap[] = [];

  constructor(
    private readonly s: string,
    private readonly env: Record<string, string | undefined>,
  ) {}

  parseDocument(): ConfMap {
    return this.parseMapBody(false);
  }

  private fail(message: string): never {
    throw new NatsConfSyntaxError(message, this.s, this.i);
  }

  private peek(): string | undefined {
    return this.s[this.i];
  }

  /** Spaces, tabs and comments; newlines too when `newlines`. */
  private skip(newlines: boolean): void {
    for (;;) {
      const c = this.peek();
      if (c === ' ' || c === '\t' || c === '\r' || (newlines && c === '\n')) {
        this.i++;
      } else if (c === '#' || (c === '/' && this.s[this.i + 1] === '/')) {
        while (this.i < this.s.length && this.s[this.i] !== '\n') this.i++;
      } else {
        return;
      }
    }
  }

  /** Between entries: whitespace, newlines, comments and the separators `,` and `;`. */
  private skipSeparators(): void {
    for (;;) {
      this.skip(true);
      const c = this.peek();
      if (c === ',' || c === ';') this.i++;
      else return;
    }
  }

  private parseMapBody(braced: boolean): ConfMap {
    const map: ConfMap = {};
    this.scopes.push(map);
    for (;;) {
      this.skipSeparators();
      const c = this.peek();
      if (c === undefined) {
        if (braced) this.fail('unterminated block: missing }');
        break;
      }
      if (c === '}') {
        if (!braced) this.fail('unexpected }');
        this.i++;
        break;
      }
      const key = this.parseKey();
      if (key.toLowerCase() === 'include') this.fail('include is not supported by this reader');
      this.skip(false);
      if (this.peek() === ':' || this.peek() === '=') {
        this.i++;
        this.skip(false);
      }
      map[key] = this.parseValue();
    }
    this.scopes.pop();
    return map;
  }

  private parseKey(): string {
    const c = this.peek();
    if (c === '"' || c === "'") return this.parseQuoted();
    const start = this.i;
    while (this.i < this.s.length && BARE_KEY.test(this.s[this.i]!)) this.i++;
    if (this.i === start) this.fail(`expected a key, found ${JSON.stringify(c)}`);
    return this.s.slice(start, this.i);
  }

  private parseValue(): ConfValue {
    this.skip(false);
    const c = this.peek();
    if (c === undefined || c === '\n') this.fail('missing value');
    if (c === '{') {
      this.i++;
      return this.parseMapBody(true);
    }
    if (c === '[') {
      this.i++;
      return this.parseArray();
    }
    if (c === '"' || c === "'") return this.parseQuoted();
    if (c === '$') {
      this.i++;
      const start = this.i;
      while (this.i < this.s.length && VARIABLE.test(this.s[this.i]!)) this.i++;
      const name = this.s.slice(start, this.i);
      if (!name) this.fail('$ without a variable name');
      return this.resolve(name);
    }
    return this.parseBare();
  }

  private parseArray(): ConfValue[] {
    const items: ConfValue[] = [];
    for (;;) {
      this.skipSeparators();
      const c = this.peek();
      if (c === undefined) this.fail('unterminated array: missing ]');
      if (c === ']') {
        this.i++;
        return items;
      }
      items.push(this.parseValue());
    }
  }

  private parseQuoted(): string {
    const quote = this.peek()!;
    const start = this.i;
    this.i++;
    while (this.i < this.s.length && this.s[this.i] !== quote) {
      if (quote === '"' && this.s[this.i] === '\\') this.i++;
      if (this.s[this.i] === '\n') this.fail('unterminated string');
      this.i++;
    }
    if (this.i >= this.s.length) this.fail('unterminated string');
    this.i++;
    const raw = this.s.slice(start, this.i);
    return quote === '"' ? (JSON.parse(raw) as string) : raw.slice(1, -1);
  }

  /** An unquoted value: up to the end of the line, a separator, a closing bracket or a comment. */
  private parseBare(): ConfValue {
    const start = this.i;
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (c === '\n' || c === ',' || c === ';' || c === '}' || c === ']') break;
      if (c === '#' && /\s/.test(this.s[this.i - 1] ?? ' ')) break;
      this.i++;
    }
    const text = this.s.slice(start, this.i).trim();
    if (/^-?\d+$/.test(text)) return Number(text);
    if (/^(true|yes|on)$/i.test(text)) return true;
    if (/^(false|no|off)$/i.test(text)) return false;
    return text;
  }

  private resolve(name: string): ConfValue {
    for (let k = this.scopes.length - 1; k >= 0; k--) {
      const scope = this.scopes[k]!;
      if (Object.prototype.hasOwnProperty.call(scope, name)) return scope[name]!;
    }
    const fromEnv = this.env[name];
    return fromEnv !== undefined ? fromEnv : new EnvRef(name);
  }
}
