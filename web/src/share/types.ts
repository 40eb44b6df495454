/** The snapshot GET /api/shares/ID answers (docs/api.md, "Share links"). */
import type { WireSource } from "../protocol/types";

export interface SharedImage {
  id: string;
  media_type: string | null;
  width: number | null;
  height: number | null;
}

export interface SharedMessage {
  role: "user" | "assistant";
  content: string;
  reasoning: string | null;
  sources: WireSource[];
  attachments: SharedImage[];
  thinking_ms: number | null;
  status: string;
  model: string | null;
  created_at: number;
}

export interface SharedSnapshot {
  title: string;
  created_at: number;
  messages: SharedMessage[];
}
