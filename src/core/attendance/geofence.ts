/** Mean Earth radius (IUGG), metres. */
export const EARTH_RADIUS_M = 6_371_008.8;

export interface Position {
  latitude: number;
  longitude: number;
  /** Radius of the 68 % confidence circle reported by the device, metres. */
  accuracy: number;
}

export interface Site {
  id: string;
  latitude: number;
  longitude: number;
  radiusM: number;
}

export type GeofenceVerdict = 'inside' | 'outside' | 'unknown' | 'not_required';

export interface GeofenceResult {
  verdict: GeofenceVerdict;
  siteId: string | null;
  distanceM: number | null;
}

/** Great-circle distance by the haversine formula (accurate to ~0.5 % on the sphere model). */
export function distanceMeters(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

export function isValidPosition(p: Position): boolean {
  return (
    Number.isFinite(p.latitude) &&
    Number.isFinite(p.longitude) &&
    Number.isFinite(p.accuracy) &&
    Math.abs(p.latitude) <= 90 &&
    Math.abs(p.longitude) <= 180 &&
    p.accuracy >= 0
  );
}

/**
 * Judge a position against the company's sites, taking the device's accuracy into account: "inside" only when
 * the whole accuracy circle lies within a site's radius, "outside" only when it lies entirely beyond every
 * site, "unknown" when the circle straddles a boundary (the caller flags those). No sites: no geofence.
 */
export function judgeGeofence(position: Position | undefined, sites: readonly Site[]): GeofenceResult {
  if (!sites.length) return { verdict: 'not_required', siteId: null, distanceM: null };
  if (!position) return { verdict: 'unknown', siteId: null, distanceM: null };
  let best: { site: Site; d: number; margin: number } | undefined;
  for (const site of sites) {
    const d = distanceMeters(position.latitude, position.longitude, site.latitude, site.longitude);
    // Margin to the boundary: negative means inside; compare sites by it so a large site nearby wins.
    const margin = d - site.radiusM;
    if (!best || margin < best.margin) best = { site, d, margin };
  }
  const { site, d, margin } = best!;
  const verdict: GeofenceVerdict =
    margin + position.accuracy <= 0 ? 'inside' : margin - position.accuracy > 0 ? 'outside' : 'unknown';
  return { verdict, siteId: site.id, distanceM: Math.round(d * 10) / 10 };
}
