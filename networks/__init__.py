"""Networks: torso -> memory core (GTrXL / TrXL / LSTM / feed-forward) -> policy and PopArt value heads.

Entry point: :class:`networks.agent_net.AgentNet`. Imports nothing of ours except ``configs.schema``.
"""
