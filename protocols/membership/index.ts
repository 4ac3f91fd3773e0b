export { Hello, Welcome, Refuse, REFUSAL_CODES, MembershipRequest, MembershipResponse, ProtocolId, checkCompatibility } from './membership.ts'
export type { Compatibility } from './membership.ts'
export { MEMBERSHIP_PROTOCOL, MEMBERSHIP_MAX_FRAME_BYTES, MEMBERSHIP_TIMEOUT_MS } from './constants.ts'
