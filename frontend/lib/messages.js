// What the player says about a relay's refusal: a title per stable code, and the numbers behind it in token units
// read from the error's `details` (docs/API.md), never parsed out of the relay's English message.

/** Friendly titles for the relay's rejection codes (the relay's own message is shown under them). */
export const ERROR_TITLES = {
  daily_cap_exceeded: "Daily spending cap reached",
  session_cap_exceeded: "Session key limit reached",
  insufficient_deposit: "Not enough left in your channel — top up to keep listening",
  too_many_payees: "This channel pays the most addresses the relay settles — open a new channel",
  session_key_expired: "This browser's session key has expired",
  unauthorized_signer: "The relay does not accept this signer for the channel",
  channel_not_open: "This channel is closing or closed",
  voucher_mismatch: "The relay computed a different voucher",
  stale_voucher: "Out of sync with the relay",
  seq_gap: "Out of sync with the relay",
  bad_signature: "The voucher signature was refused",
  unknown_track: "This track is not offered in your channel's token",
  not_offered: "Not offered in this token",
  price_overflow: "That would cost more than a channel can hold",
  untrusted_catalog: "The relay's price or split differs from what the artist published on chain: not paid",
  untrusted_state: "The relay's channel state is not signed by your keys: not adopted",
  already_owned: "You already own this track",
  unknown_channel: "The relay does not know this channel yet",
  wrong_relay: "This channel is served by another relay",
  stale_caps: "Those caps are older than the ones in force",
  caps_need_payer: "Raising or lifting a cap needs your wallet's signature",
  close_state_mismatch: "Out of sync with the relay: try closing again",
  relay_unreachable: "The relay is unreachable — check your connection or try again in a minute",
  invalid_request: "The relay rejected the request",
  fee_above_max: "The relay raised its fee after showing it: nothing was signed",
  max_fee_too_low: "The relay's fee went up: look at the new fee and try again",
};

/**
 * The refusal said with the amounts in the channel's token (`fmt(bigint) -> "0.0001 ETH"`), from the error's
 * details; null when the code has no such sentence or the details are absent (the caller shows the plain message).
 */
export function explainRelayError(err, fmt) {
  const n = (name) => (typeof err?.amount === "function" ? err.amount(name) : null);
  if (err?.code === "daily_cap_exceeded") {
    const [today, amount, cap] = [n("spentToday"), n("amount"), n("dailyCap")];
    if (today === null || amount === null || cap === null) return null;
    return `This costs ${fmt(amount)}, and you have spent ${fmt(today)} of your ${fmt(cap)} daily cap today. Raise the cap or come back tomorrow.`;
  }
  if (err?.code === "insufficient_deposit") {
    const [total, deposit] = [n("total"), n("deposit")];
    if (total === null || deposit === null) return null;
    return `This would bring your total to ${fmt(total)}, more than the ${fmt(deposit)} you deposited. Top up to keep listening.`;
  }
  if (err?.code === "session_cap_exceeded") {
    const [total, cap] = [n("total"), n("sessionCap")];
    if (cap === null) return null;
    const so = total === null ? "" : ` (this would bring it to ${fmt(total)})`;
    return `This browser's session key may sign up to ${fmt(cap)} in total${so}. Raise the limit with your wallet or open a new channel.`;
  }
  return null;
}

/**
 * What a contract's custom error means for the person who sent the transaction, as a sentence that says what to
 * do. Amounts in the errors' arguments are in the token's smallest unit and are left out (never shown as wei).
 */
export const REVERT_SENTENCES = {
  TrackExists: () => "A track with this content hash is already registered: the same audio file was registered before.",
  TrackNotFound: () => "This track is not registered on chain.",
  TrackNotOwner: () => "Only the track's owner can change it: connect the wallet that registered it.",
  SplitSharesInvalid: ([sum]) => `The shares add up to ${Number(sum) / 100} %, not 100 %.`,
  SplitRecipientCount: ([count]) => `A split has 1 to 16 recipients (this one has ${count}).`,
  SplitBadRecipient: ([index]) => `Recipient ${Number(index) + 1} is not a valid address (empty, or listed twice).`,
  SplitLengthMismatch: () => "Every recipient needs a share.",
  SplitFeeInvalid: () => "The platform fee must be at most 50 % and go to an address (and an address needs a fee).",
  TermsInvalid: () => "Those prices are not valid: stream-to-own needs 1 to 32 paid plays and a first-play price.",
  ChannelNotOpen: () => "This channel is closing or closed.",
  ChannelNotPayer: () => "Only the wallet that opened this channel can do that: connect it.",
  ChannelWindowNotOver: () => "The challenge window is not over yet: withdraw once the countdown ends.",
  ChannelDepositZero: () => "Enter an amount above zero.",
  ChannelDepositOverflow: () => "That would make the deposit larger than a channel can hold.",
  SessionKeyExpiryInPast: () => "That session key would already be expired: check your computer's clock.",
  TokenNotAllowed: () => "This deployment does not take that token.",
  NothingToClaim: () => "Nothing to claim in this token yet: earnings become claimable once the relay settles them.",
  VoucherPrevStateMismatch: () => "The relay settled this channel meanwhile: try again.",
  ERC20InsufficientBalance: () => "Your wallet does not hold enough of this token.",
  ERC20InsufficientAllowance: () => "The channel contract may not move that much of your token yet: approve it first.",
  ERC2612ExpiredSignature: () => "The spending permit expired before the transaction was sent: try again.",
};
