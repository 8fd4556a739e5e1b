/* lora/demo_corpus.h — the text `make demo` pretrains its base model on.
 *
 * The demo (docs/demo.md) trains a small base model from scratch, then
 * LoRA-tunes it for the smart-home task of lora/demo_task.h.  For the
 * adapter to matter, the base must know the house but not the task: its
 * corpus is built from the task's TRAINING examples only (held-out
 * phrasings and slots never appear) and never pairs a command with its
 * JSON action.  Two kinds of documents, separated by blank lines
 * (`edgetune data --format text`, the default blank-line separator):
 *
 *   a reply, in plain English (the command is understood, but the answer
 *   follows another convention than the task's):
 *       Command: turn off the kitchen lights
 *       Reply:
 *       ok, the kitchen light is off now.
 *
 *   a device log: JSON records in the task's schema, for other examples
 *   than the surrounding replies (the base learns the JSON, unpaired):
 *       Log:
 *       {"device":"fan","room":"office","action":"on"}
 *       {"device":"thermostat","room":"bedroom","action":"set","value":21}
 *
 * The task itself asks "Command: <command>\nAction:\n" -> the JSON, a
 * pairing the base has never seen: before the adapter it answers in the
 * reply convention (exact match near 0); the adapter teaches the mapping.
 * Deterministic: a function of the examples and their order.
 */
#ifndef ET_DEMO_CORPUS_H
#define ET_DEMO_CORPUS_H

#include <stddef.h>

#include "../common/et.h"
#include "demo_task.h"

/* Log records per log document, and one log document per this many replies. */
#define DEMO_CORPUS_LOG_LINES 4
#define DEMO_CORPUS_LOG_EVERY 4

/* The reply sentence for a canonical action JSON (as demo_task.h writes
 * it) into out[cap]:
 *   light on/off        "ok, the <room> light is on now."
 *   light set v         "ok, the <room> light is at <v> percent now."
 *   thermostat set v    "ok, the <room> thermostat is at <v> degrees now."
 *   fan, tv on/off      "ok, the <room> <device> is on now."
 *   blinds open/close   "ok, the <room> blinds are open now." / "... are closed now."
 *   lock lock/unlock    "ok, the <room> door is locked now." / "... is unlocked now."
 * Returns 0, or -1 when the JSON is not a task action or out is too small. */
int demo_corpus_reply(const char *action_json, char *out, size_t cap);

typedef struct demo_corpus_stats {
    int n_replies;   /* reply documents */
    int n_logs;      /* log documents */
    size_t bytes;    /* file size */
} demo_corpus_stats;

/* Write the corpus for ex[0..n) to path (atomic): for each example its
 * reply document; after every DEMO_CORPUS_LOG_EVERY replies a log document
 * of DEMO_CORPUS_LOG_LINES actions of examples i*7+1, i*7+2, ... (mod n;
 * i = the log's index), i.e. not the replies next to it.  stats may be NULL.
 * 0, ET_EINPUT (an example whose action is not a task action) or ET_ERUN. */
int demo_corpus_write(const demo_example *ex, int n, const char *path, demo_corpus_stats *stats, et_err *e);

#endif
