export { Announce, Revoke, ListRequest, AnnounceRequest, ACK_STATUSES, Ack, InventoryHeader, AnnounceResponse, Inventory, decodeInventory } from './experts-announce.ts'
export { Hex64, PeerIdText, ExpertId, SignatureText, ExpertManifest, Revocation, SignedRevocation, canonicalRecordJson, manifestSigningBytes, revocationSigningBytes } from './records.ts'
export * from './constants.ts'
