import { chmod, chown, readFile, stat } from 'node:fs/promises';
import { createPrivateKey } from 'node:crypto';
import { fail, isLoopback, pass, skip, warn, type Check } from './types.js';

const needConfig = skip('no valid config (see config.valid)');

export const configValid: Check = {
  id: 'config.valid',
  run(env) {
    if (env.configError)
      return fail(
        `the config does not load: ${env.configError.message}`,
        'fix the named key, then `attendux config validate`',
      );
    return pass(`${env.loaded!.path} is valid`);
  },
};

export const secretsMode: Check = {
  id: 'config.secrets-mode',
  async run(env) {
    if (!env.loaded) return needConfig;
    const path = env.loaded.secretsPath;
    const st = await stat(path).catch(() => null); // a missing file is this check's failure, below
    if (!st)
      return fail(
        `${path} does not exist`,
        'restore it from a config backup (`attendux restore --config-only`)',
      );
    const mode = st.mode & 0o777;
    if (mode & 0o077)
      return fail(`${path} is mode ${mode.toString(8)}: readable by others`, `chmod 600 ${path}`, () =>
        chmod(path, 0o600),
      );
    return pass(`${path} is mode 600`);
  },
};

/** The service user is whoever owns the data dir (it runs the server and writes there). */
export const secretsOwner: Check = {
  id: 'config.secrets-owner',
  async run(env) {
    if (!env.loaded) return needConfig;
    const path = env.loaded.secretsPath;
    const [s, d] = await Promise.all([
      stat(path).catch(() => null), // missing: reported as a skip below
      stat(env.loaded.config.dataDir).catch(() => null),
    ]);
    if (!s || !d) return skip('the secrets file or the data dir does not exist');
    if (s.uid !== d.uid)
      return fail(
        `${path} is owned by uid ${s.uid}, the service user (owner of ${env.loaded.config.dataDir}) is uid ${d.uid}`,
        `chown ${d.uid}:${d.gid} ${path}`,
        process.getuid?.() === 0 ? () => chown(path, d.uid, d.gid) : undefined,
      );
    return pass(`owned by the service user (uid ${s.uid})`);
  },
};

const SECRETISH = /(password|secret|token|private|hmac|pepper|sessionKey|auditKey|signingKey|dataKeys)/i;

export const noSecretInConfig: Check = {
  id: 'config.no-secret-in-config',
  async run(env) {
    if (!env.loaded) return needConfig;
    const found: string[] = [];
    const walk = (v: unknown, path: string) => {
      if (typeof v === 'string') {
        if (/^postgres(ql)?:\/\/[^/@:]+:[^@]+@/.test(v))
          found.push(`${path} (a database URL with a password)`);
        else if (/^[A-Za-z0-9+/]{43}=$/.test(v) || /^AGE-SECRET-KEY-/.test(v))
          found.push(`${path} (looks like a key)`);
        else if (SECRETISH.test(path.split('.').pop() ?? '') && v) found.push(path);
      } else if (v && typeof v === 'object')
        for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
    };
    try {
      walk(JSON.parse(await readFile(env.loaded.path, 'utf8')), '');
    } catch {
      // the error is this check's answer: a skip
      return skip('the config file is not readable JSON');
    }
    if (found.length)
      return fail(
        `secrets in the main config file: ${found.join(', ')}`,
        `move them to the secrets file (${env.loaded.secretsPath})`,
      );
    return pass('no secrets in the main config file');
  },
};

export const keyLength: Check = {
  id: 'config.key-length',
  async run(env) {
    if (!env.loaded) return needConfig;
    let s: Record<string, unknown>;
    try {
      s = JSON.parse(await readFile(env.loaded.secretsPath, 'utf8')) as Record<string, unknown>;
    } catch {
      // the error is this check's answer: a skip
      return skip('the secrets file is not readable');
    }
    const bad: string[] = [];
    const len = (v: unknown) => (typeof v === 'string' ? Buffer.from(v, 'base64').length : 0);
    for (const k of ['sessionKey', 'apiKeyHmacKey', 'auditPepper', 'auditKey'])
      if (len(s[k]) < 32) bad.push(k);
    for (const [id, v] of Object.entries((s.dataKeys ?? {}) as Record<string, unknown>))
      if (len(v) !== 32) bad.push(`dataKeys.${id}`);
    try {
      const k = createPrivateKey({
        key: Buffer.from(String(s.signingKey), 'base64'),
        format: 'der',
        type: 'pkcs8',
      });
      if (k.asymmetricKeyType !== 'ed25519') bad.push('signingKey');
    } catch {
      // an unparseable key is reported as bad
      bad.push('signingKey');
    }
    if (bad.length)
      return fail(
        `keys too short or malformed: ${bad.join(', ')}`,
        'generate new ones with the CSPRNG (32 bytes, base64); see README "Keys"',
      );
    return pass('every key is 256 bits (signing key Ed25519)');
  },
};

export const publicUrl: Check = {
  id: 'config.public-url',
  run(env) {
    if (!env.loaded) return needConfig;
    const s = env.loaded.config.server;
    if (isLoopback(s.host)) return pass(`the server listens on ${s.host} only`);
    if (!s.publicUrl)
      return fail(
        `the server listens on ${s.host} but server.publicUrl is not set`,
        'attendux config set server.publicUrl https://attendance.example.com',
      );
    return pass(`server.publicUrl is ${s.publicUrl}`);
  },
};

export const securityContact: Check = {
  id: 'config.security-contact',
  run(env) {
    if (!env.loaded) return needConfig;
    const c = env.loaded.config.server.securityContact;
    if (/example\.invalid/.test(c))
      return warn(
        `the security contact is the default (${c})`,
        'attendux config set server.securityContact mailto:security@your-domain',
      );
    return pass(`security contact ${c}`);
  },
};

export const configChecks = [
  configValid,
  secretsMode,
  secretsOwner,
  noSecretInConfig,
  keyLength,
  publicUrl,
  securityContact,
];
