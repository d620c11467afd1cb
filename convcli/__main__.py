from convcli.server.client import main

main()
