// The MAC lives in src/crypto (src/db/queries/audit.ts needs it, and src/db must not import src/core).
export * from '../../crypto/audit-mac.js';
