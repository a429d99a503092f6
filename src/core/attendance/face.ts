/** Face templates are embedding vectors from the client's model; the server compares them by cosine similarity. */
export const FACE_MIN_DIMENSIONS = 64;
export const FACE_MAX_DIMENSIONS = 1024;
/**
 * Largest absolute value of one component. Real embeddings are unit vectors or close to (components well
 * within ±10); the bound keeps every product and sum of squares far from overflow (1024 × 1e6 < 2^53), so
 * the similarity of two accepted vectors is always a finite number, and keeps values inside float32 (a
 * template is stored as float32: 1e39 would become Infinity there).
 */
export const FACE_MAX_ABS = 1000;

/** Why a vector cannot be a face template or probe, or undefined when it can. */
export function faceVectorProblem(v: readonly number[]): string | undefined {
  if (v.length < FACE_MIN_DIMENSIONS || v.length > FACE_MAX_DIMENSIONS)
    return `must have ${FACE_MIN_DIMENSIONS} to ${FACE_MAX_DIMENSIONS} components`;
  let norm = 0;
  for (const x of v) {
    if (typeof x !== 'number' || !Number.isFinite(x)) return 'every component must be a finite number';
    if (Math.abs(x) > FACE_MAX_ABS) return `every component must be within ±${FACE_MAX_ABS}`;
    norm += x * x;
  }
  // Denormals square to 0: a vector of them is as directionless as the zero vector.
  if (!(norm > 0) || !Number.isFinite(norm)) return 'must not be the zero vector';
  return undefined;
}

export function cosineSimilarity(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length || a.length === 0) return -1;
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  if (na === 0 || nb === 0) return -1;
  return dot / (Math.sqrt(na) * Math.sqrt(nb));
}

/**
 * The face check, failing closed: a template or probe that is not a valid vector, or a score that is not a
 * finite number (NaN compares false with everything, so `score < threshold` would let it pass), never
 * matches.
 */
export function faceMatch(
  template: readonly number[],
  probe: readonly number[],
  threshold: number,
): { ok: boolean; score: number | null; invalidTemplate: boolean } {
  if (faceVectorProblem(template) !== undefined) return { ok: false, score: null, invalidTemplate: true };
  if (faceVectorProblem(probe) !== undefined || template.length !== probe.length)
    return { ok: false, score: null, invalidTemplate: false };
  const raw = cosineSimilarity(template, probe);
  if (!Number.isFinite(raw)) return { ok: false, score: null, invalidTemplate: false };
  const score = Math.round(raw * 10000) / 10000;
  return { ok: Number.isFinite(threshold) && score >= threshold, score, invalidTemplate: false };
}

/**
 * Mismatches per employee (per server process): after FACE_MISMATCH_LIMIT within FACE_MISMATCH_WINDOW_MS the
 * employee's face checks answer 429 until the window has passed, so a stolen kiosk key cannot search the
 * template with unlimited probes.
 */
export const FACE_MISMATCH_LIMIT = 5;
export const FACE_MISMATCH_WINDOW_MS = 15 * 60_000;

export class FaceThrottle {
  private readonly misses = new Map<string, { count: number; since: number }>();
  private readonly limit: number;
  private readonly windowMs: number;

  constructor(limit = FACE_MISMATCH_LIMIT, windowMs = FACE_MISMATCH_WINDOW_MS) {
    this.limit = limit;
    this.windowMs = windowMs;
  }

  blocked(key: string, now = Date.now()): boolean {
    const m = this.misses.get(key);
    if (!m) return false;
    if (now - m.since > this.windowMs) {
      this.misses.delete(key);
      return false;
    }
    return m.count >= this.limit;
  }

  /** Record a mismatch; returns the count in the current window. */
  miss(key: string, now = Date.now()): number {
    let m = this.misses.get(key);
    if (!m || now - m.since > this.windowMs) m = { count: 0, since: now };
    m.count++;
    if (this.misses.size > 50_000) this.misses.clear();
    this.misses.set(key, m);
    return m.count;
  }
}
