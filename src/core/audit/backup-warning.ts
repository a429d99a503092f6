/** The loud line a backup prints when the chain it copied is broken. */
export function backupAuditWarning(
  a:
    | {
        verified: {
          ok: boolean;
          breakCount: number;
          breaks: { kind: string; tenantId: string; seq: number; detail: string }[];
        };
      }
    | undefined,
): string | undefined {
  if (!a || a.verified.ok) return undefined;
  const first = a.verified.breaks[0];
  return (
    `WARNING: the audit log in this backup does NOT verify: ${a.verified.breakCount} break(s)` +
    (first ? `, first ${first.kind} at ${first.tenantId}#${first.seq}: ${first.detail}` : '') +
    '. The backup was taken anyway; run `attendux audit verify` and investigate.'
  );
}
