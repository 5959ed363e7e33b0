from chainstream.cli import main

main()
