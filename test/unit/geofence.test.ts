import { describe, expect, it } from 'vitest';
import { distanceMeters, isValidPosition, judgeGeofence } from '../../src/core/attendance/geofence.js';

const site = { id: 's1', latitude: 52.52, longitude: 13.405, radiusM: 100 };

describe('great-circle distance', () => {
  it('is zero for the same point', () => {
    expect(distanceMeters(52.52, 13.405, 52.52, 13.405)).toBe(0);
  });

  it('measures one degree of latitude as about 111.2 km', () => {
    expect(distanceMeters(0, 0, 1, 0)).toBeCloseTo(111_195, -1);
  });

  it('matches the known Berlin to Paris distance within 0.5 %', () => {
    const d = distanceMeters(52.52, 13.405, 48.8566, 2.3522);
    expect(Math.abs(d - 877_500) / 877_500).toBeLessThan(0.005);
  });

  it('takes the short way across the antimeridian', () => {
    expect(distanceMeters(0, 179.9, 0, -179.9)).toBeCloseTo(22_239, -1);
  });

  it('is half the circumference between antipodes, without NaN', () => {
    const d = distanceMeters(10, 20, -10, -160);
    expect(Number.isFinite(d)).toBe(true);
    expect(d).toBeCloseTo(Math.PI * 6_371_008.8, -1);
  });
});

describe('geofence verdict', () => {
  it('is inside when the whole accuracy circle is within the radius', () => {
    // ~55.6 m north of the centre, accuracy 40 m: 95.6 <= 100.
    expect(judgeGeofence({ latitude: 52.5205, longitude: 13.405, accuracy: 40 }, [site]).verdict).toBe(
      'inside',
    );
  });

  it('is unknown when the accuracy circle straddles the boundary', () => {
    expect(judgeGeofence({ latitude: 52.5205, longitude: 13.405, accuracy: 50 }, [site]).verdict).toBe(
      'unknown',
    );
  });

  it('is outside only when the whole accuracy circle is beyond the radius', () => {
    // ~222 m away: outside with 100 m accuracy, unknown with 130 m.
    expect(judgeGeofence({ latitude: 52.522, longitude: 13.405, accuracy: 100 }, [site]).verdict).toBe(
      'outside',
    );
    expect(judgeGeofence({ latitude: 52.522, longitude: 13.405, accuracy: 130 }, [site]).verdict).toBe(
      'unknown',
    );
  });

  it('picks the site whose boundary is nearest from the inside', () => {
    const big = { id: 'big', latitude: 52.53, longitude: 13.405, radiusM: 5000 };
    const r = judgeGeofence({ latitude: 52.5205, longitude: 13.405, accuracy: 10 }, [site, big]);
    expect(r.siteId).toBe('big');
    expect(r.verdict).toBe('inside');
  });

  it('is not required without sites and unknown without a position', () => {
    expect(judgeGeofence({ latitude: 0, longitude: 0, accuracy: 1 }, []).verdict).toBe('not_required');
    expect(judgeGeofence(undefined, [site]).verdict).toBe('unknown');
  });

  it('rejects NaN, infinite and out-of-range positions as invalid', () => {
    expect(isValidPosition({ latitude: NaN, longitude: 0, accuracy: 1 })).toBe(false);
    expect(isValidPosition({ latitude: 0, longitude: Infinity, accuracy: 1 })).toBe(false);
    expect(isValidPosition({ latitude: 90.0001, longitude: 0, accuracy: 1 })).toBe(false);
    expect(isValidPosition({ latitude: 0, longitude: 0, accuracy: -1 })).toBe(false);
    expect(isValidPosition({ latitude: -90, longitude: 180, accuracy: 0 })).toBe(true);
  });
});
