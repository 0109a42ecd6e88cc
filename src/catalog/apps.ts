/** The five named apps. Their rules live in blocklists/<id>.yaml. */
export const APP_IDS = ['kakaotalk', 'line', 'didi', 'talkbox', 'vower'] as const;

export type AppId = (typeof APP_IDS)[number];

export function isAppId(value: unknown): value is AppId {
  return typeof value === 'string' && (APP_IDS as readonly string[]).includes(value);
}

export type Tier = 'core' | 'extended';

/** Protocols the gateway recognises by their bytes (proxy/inspect/), which an app may claim. */
export const PROTOCOL_IDS = ['loco'] as const;

export type ProtocolId = (typeof PROTOCOL_IDS)[number];
