mod forward_send;
mod support;
