import { invalid } from '../service.js';
import type { TenantSettings } from '../settings/settings.js';

/**
 * How far ahead of the server's clock a device's time may be and still count as "now": phones set their clocks
 * from the network, but a few seconds of drift (and the request's own travel) must not refuse a real check.
 */
export const DEVICE_CLOCK_SKEW_MS = 60_000;

/** When a queued (offline) check happened by the device's clock, and that it was queued. */
export interface OfflineInput {
  offline?: boolean;
  deviceTime?: Date;
}

/**
 * The time to record for a check: the device's for a check queued offline (the server's own time is kept as
 * recorded_at), else none (the server's now). Refuses a device time in the future, and one older than the
 * company's `attendance.offlineMaxHours`: a check that late is a correction request, not a check-in.
 */
export function offlineTime(b: OfflineInput, settings: TenantSettings, now: Date): Date | undefined {
  if (!b.offline) {
    if (b.deviceTime)
      throw invalid('body.deviceTime', 'without offline', 'deviceTime is only for offline: true');
    return undefined;
  }
  if (!b.deviceTime)
    throw invalid('body.deviceTime', 'required', 'an offline check needs deviceTime (when it was queued)');
  const age = now.getTime() - b.deviceTime.getTime();
  if (age < -DEVICE_CLOCK_SKEW_MS)
    throw invalid(
      'body.deviceTime',
      'in the future',
      "the device's time is in the future: check the phone's clock and send it again",
    );
  const maxHours = settings['attendance.offlineMaxHours'];
  if (age > maxHours * 3_600_000)
    throw invalid(
      'body.deviceTime',
      'too old',
      `the check was queued more than ${maxHours} hours ago, longer than this company accepts offline checks; ` +
        'request a correction instead',
    );
  // Within the allowed drift, a device a little ahead is "now": an event never happens after it was received.
  return b.deviceTime > now ? now : b.deviceTime;
}
