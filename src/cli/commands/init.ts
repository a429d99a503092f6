import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { contextOf, intOption, type CliContext } from '../context.js';
import { AttenduxError } from '../../errors.js';
import type { InitOptions, InitResult } from '../../core/init.js';

interface InitFlags {
  configOut?: string;
  dataDir?: string;
  databaseUrl?: string;
  databaseName?: string;
  embeddedPort?: number;
  backupRecipient?: string;
  identityOut?: string;
  company?: string;
  companyName?: string;
  timeZone?: string;
  currency?: string;
  adminEmail?: string;
  adminPasswordFile?: string;
  host?: string;
  port?: number;
  yes?: boolean;
  force?: boolean;
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('provision an install: config, secrets, backup key, database, first company and owner')
    .option('--config-out <file>', 'where to write the config (default: --config, or ./attendux.json)')
    .option('--data-dir <dir>', 'data directory (embedded PostgreSQL, backups, locks)')
    .option(
      '--database-url <url>',
      'superuser URL of an existing PostgreSQL to provision on (default: embedded)',
    )
    .option('--database-name <name>', 'database to create (default attendux)')
    .addOption(
      new Option('--embedded-port <port>', 'port of the embedded PostgreSQL').argParser(
        intOption('--embedded-port', 1, 65535),
      ),
    )
    .option(
      // Not `<age1...>`: a placeholder ending in ... makes commander read the option as variadic.
      '--backup-recipient <age-public-key>',
      'encrypt backups to this existing age public key instead of generating a key pair',
    )
    .option(
      '--identity-out <file>',
      'where to write the generated backup identity (default beside the config)',
    )
    .option('--company <slug>', 'slug of the first company')
    .option('--company-name <name>', 'display name of the first company')
    .option('--time-zone <tz>', 'time zone of the first company (IANA name)', 'UTC')
    .option('--currency <code>', 'currency of the first company (ISO 4217)', 'EUR')
    .option('--admin-email <email>', 'email of the first company owner')
    .option(
      '--admin-password-file <file>',
      'read the owner password from this file (default: prompt, or generate)',
    )
    .option('--host <host>', 'address the server listens on', '127.0.0.1')
    .addOption(
      new Option('--port <port>', 'port the server listens on')
        .default(8080)
        .argParser(intOption('--port', 1, 65535)),
    )
    .option('-y, --yes', 'non-interactive: take the flags and defaults, ask nothing')
    .option('--force', 'rewrite an existing config (existing secrets are always kept)')
    .action(async (flags: InitFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { initInstall, installStatus } = await import('../../core/init.js');
      // Installed (or part way): nothing to ask or validate; init reports it, or finishes it from its
      // recorded progress.
      const status = flags.force ? 'none' : await installStatus(configPathOf(ctx, flags));
      const opts = status === 'none' ? await collect(ctx, flags) : await fromFlags(ctx, flags);
      const result = await initInstall({ ...opts, onStep: (s) => ctx.note(`  ${s}`) });
      printInit(ctx, result);
    });
}

export function printInit(ctx: CliContext, r: InitResult): void {
  ctx.result({ ...r }, () =>
    r.alreadyInstalled
      ? [
          `attendux is already installed (${r.configPath}); nothing changed.`,
          'Use --force to rewrite the config.',
        ]
      : [
          `${r.resumed ? 'Finished installing' : 'Installed'} attendux: config ${r.configPath}`,
          `  company ${r.tenant.slug}, owner ${r.adminEmail}`,
          ...(r.identityPath
            ? [
                `  backup identity: ${r.identityPath}`,
                '  MOVE IT OFF THIS SERVER: without it no backup can be restored.',
              ]
            : []),
          ...(r.signingPublicKey
            ? [`  backup signing key (public): ${r.signingPublicKey} (keep it with the identity)`]
            : []),
        ],
  );
  if (r.generatedPassword && !ctx.json) ctx.important(`Owner password (shown once): ${r.generatedPassword}`);
}

function configPathOf(ctx: CliContext, f: InitFlags): string {
  return f.configOut ?? ctx.opts.config ?? './attendux.json';
}

async function fromFlags(ctx: CliContext, f: InitFlags, adminPassword?: string): Promise<InitOptions> {
  const { cliActor } = await import('../../core/actor.js');
  if (adminPassword === undefined && f.adminPasswordFile) {
    adminPassword = (await readFile(f.adminPasswordFile, 'utf8')).replace(/\r?\n$/, '');
  }
  return {
    configPath: configPathOf(ctx, f),
    dataDir: f.dataDir ?? './attendux-data',
    superuserUrl: f.databaseUrl,
    databaseName: f.databaseName,
    embeddedPort: f.embeddedPort,
    backupRecipient: f.backupRecipient,
    identityPath: f.identityOut,
    tenantSlug: f.company,
    tenantName: f.companyName ?? f.company,
    timeZone: f.timeZone,
    currency: f.currency,
    adminEmail: f.adminEmail,
    adminPassword,
    serverHost: f.host,
    serverPort: f.port,
    force: f.force,
    actor: cliActor(),
  };
}

async function collect(ctx: CliContext, f: InitFlags): Promise<InitOptions> {
  let adminPassword: string | undefined;
  if (f.adminPasswordFile) {
    adminPassword = (await readFile(f.adminPasswordFile, 'utf8')).replace(/\r?\n$/, '');
  }
  if (f.yes) {
    const missing = [!f.company && '--company', !f.adminEmail && '--admin-email'].filter(Boolean);
    if (missing.length) throw new AttenduxError('USAGE', `init --yes needs ${missing.join(' and ')}`);
  } else if (!ctx.interactive) {
    throw new AttenduxError('NOT_A_TTY', 'init needs answers and there is no terminal to ask on', {
      hint: 'pass --yes with --company SLUG --admin-email EMAIL (and optionally --database-url, --data-dir, --admin-password-file)',
    });
  } else {
    const { input, password, select } = await import('@inquirer/prompts');
    f.dataDir ??= await input({ message: 'Data directory', default: '/var/lib/attendux' });
    const where = await select({
      message: 'PostgreSQL',
      choices: [
        { name: 'embedded (attendux runs PostgreSQL in the data directory)', value: 'embedded' },
        { name: 'an existing server (I have a superuser URL)', value: 'external' },
      ],
    });
    if (where === 'external') {
      f.databaseUrl ??= await input({
        message: 'Superuser URL',
        default: 'postgres://postgres@127.0.0.1:5432/postgres',
      });
    }
    f.company ??= await input({
      message: 'First company slug (a-z, 0-9, -)',
      validate: (v) => /^[a-z0-9][a-z0-9-]{1,62}$/.test(v) || 'lower-case letters, digits, dashes',
    });
    f.companyName ??= await input({ message: 'Company name', default: f.company });
    f.adminEmail ??= await input({ message: 'Owner email' });
    if (adminPassword === undefined) {
      const pw = await password({ message: 'Owner password (empty: generate one)', mask: '*' });
      adminPassword = pw || undefined;
    }
  }
  return fromFlags(ctx, f, adminPassword);
}
