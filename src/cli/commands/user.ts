import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { contextOf, table, type CliContext } from '../context.js';

const tenantOption = () => new Option('-t, --tenant <company>', 'company slug or id').makeOptionMandatory();

async function passwordFrom(file: string | undefined): Promise<string | undefined> {
  return file === undefined ? undefined : (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
}

function showGenerated(ctx: CliContext, email: string, password: string | undefined) {
  if (password && !ctx.json) ctx.important(`Password for ${email} (shown once): ${password}`);
}

export function registerUser(program: Command): void {
  const user = program.command('user').description('people who log in to a company');

  userCreate(user);
  userList(user);
  userDisable(user);
  userResetPassword(user);
  userRevokeSessions(user);
  userUnlock(user);
}

function userCreate(user: Command): void {
  user
    .command('create <email>')
    .description('create a user (password from --password-file, else generated and shown once)')
    .addOption(tenantOption())
    .addOption(new Option('--role <role>', 'owner, admin, manager, hr or employee').default('employee'))
    .option('--name <name>', 'display name')
    .option('--password-file <file>', 'read the password from this file')
    .action(
      async (
        email: string,
        flags: { tenant: string; role: string; name?: string; passwordFile?: string },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { createUser, parseRole } = await import('../../core/accounts/users.js');
        const { cliActor } = await import('../../core/actor.js');
        const role = parseRole(flags.role);
        const password = await passwordFrom(flags.passwordFile);
        const r = await withInstall(ctx.location, (i) =>
          createUser(i.admin, {
            tenant: flags.tenant,
            email,
            role,
            displayName: flags.name,
            password,
            actor: cliActor(),
          }),
        );
        ctx.result(
          { user: r.user, generatedPassword: r.generatedPassword },
          () => `created ${r.user.role} ${r.user.email}`,
        );
        showGenerated(ctx, r.user.email, r.generatedPassword);
      },
    );
}

function userList(user: Command): void {
  user
    .command('list')
    .description('list the users of a company')
    .addOption(tenantOption())
    .action(async (flags: { tenant: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { listUsers } = await import('../../core/accounts/users.js');
      const rows = await withInstall(ctx.location, (i) => listUsers(i.admin, flags.tenant));
      ctx.result(rows, () =>
        table(
          rows.map((u) => ({
            ...u,
            state: u.disabledAt
              ? 'disabled'
              : u.lockedUntil && u.lockedUntil > new Date()
                ? 'locked'
                : 'active',
          })),
          ['email', 'role', 'state', 'lastLoginAt'],
        ),
      );
    });
}

function userDisable(user: Command): void {
  user
    .command('disable <email>')
    .description('disable a user and end their sessions (--enable to undo)')
    .addOption(tenantOption())
    .option('--enable', 'enable again')
    .action(async (email: string, flags: { tenant: string; enable?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { disableUser } = await import('../../core/accounts/users.js');
      const { withLedgerSync } = await import('../../core/ledger/index.js');
      const { cliActor } = await import('../../core/actor.js');
      const u = await withInstall(ctx.location, (i) =>
        withLedgerSync(
          i,
          disableUser(i.admin, { tenant: flags.tenant, email, enable: flags.enable, actor: cliActor() }),
        ),
      );
      ctx.result(
        { email: u.email, disabled: !flags.enable },
        () => `${flags.enable ? 'enabled' : 'disabled'} ${u.email}`,
      );
    });
}

function userResetPassword(user: Command): void {
  user
    .command('reset-password <email>')
    .description('set a new password (generated unless --password-file) and end all sessions')
    .addOption(tenantOption())
    .option('--password-file <file>', 'read the new password from this file')
    .action(async (email: string, flags: { tenant: string; passwordFile?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { resetPassword } = await import('../../core/accounts/users.js');
      const { withLedgerSync } = await import('../../core/ledger/index.js');
      const { cliActor } = await import('../../core/actor.js');
      const password = await passwordFrom(flags.passwordFile);
      const r = await withInstall(ctx.location, (i) =>
        withLedgerSync(
          i,
          resetPassword(i.admin, { tenant: flags.tenant, email, password, actor: cliActor() }),
        ),
      );
      ctx.result(
        { email: r.user.email, generatedPassword: r.generatedPassword },
        () => `password of ${r.user.email} reset; sessions ended`,
      );
      showGenerated(ctx, r.user.email, r.generatedPassword);
    });
}

function userRevokeSessions(user: Command): void {
  user
    .command('revoke-sessions <email>')
    .description('end every session of a user at once (bumps the session epoch)')
    .addOption(tenantOption())
    .action(async (email: string, flags: { tenant: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { revokeSessions } = await import('../../core/accounts/users.js');
      const { withLedgerSync } = await import('../../core/ledger/index.js');
      const { cliActor } = await import('../../core/actor.js');
      const r = await withInstall(ctx.location, (i) =>
        withLedgerSync(i, revokeSessions(i.admin, { tenant: flags.tenant, email, actor: cliActor() })),
      );
      ctx.result(
        { email: r.user.email, sessionEpoch: r.sessionEpoch },
        () => `sessions of ${r.user.email} revoked`,
      );
    });
}

function userUnlock(user: Command): void {
  user
    .command('unlock <email>')
    .description('clear a lock-out after failed logins or password changes (every client address)')
    .addOption(tenantOption())
    .action(async (email: string, flags: { tenant: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { unlockUser } = await import('../../core/accounts/users.js');
      const { cliActor } = await import('../../core/actor.js');
      const r = await withInstall(ctx.location, (i) =>
        unlockUser(i.admin, { tenant: flags.tenant, email, actor: cliActor() }),
      );
      ctx.result(
        { email: r.user.email, cleared: r.cleared },
        () => `${r.user.email} unlocked (${r.cleared} lock-out record(s) cleared)`,
      );
    });
}
