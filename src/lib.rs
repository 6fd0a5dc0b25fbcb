//! sirocco: the application. Content cache, HTTP, the server loop joining a driver to the
//! netstack, the CLI's commands, and the netns lab.
